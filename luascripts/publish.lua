-- publish: append one batch of a shard's dispatches to their streams and
-- advance the shard's checkpoint, atomically.
--
-- KEYS[1]      the shard's checkpoint hash (fields session, seq, resume_url,
--              shards, intents)
-- KEYS[2..S+1] the route streams of this batch (may repeat)
--
-- ARGV[1] session id of every entry of the batch
-- ARGV[2] seq of the batch's last event (the new checkpoint seq)
-- ARGV[3] resume_gateway_url
-- ARGV[4] shard count
-- ARGV[5] intents
-- ARGV[6] bot name
-- ARGV[7] shard id
-- ARGV[8] S, the number of streams
-- ARGV[9]  "v" envelope version
-- then per stream i (1..S): trim kind ("" | "MAXLEN" | "MINID"), trim threshold
-- then per entry: stream index (1..S), seq, t, d, guild ("" = none),
--                 before ("" = none), at (unix ms)
--
-- An entry is skipped when its seq is not above the checkpoint's seq of the
-- same session (nor above an earlier entry of the batch): a batch replayed
-- after RESUME adds nothing twice. A batch of another session replaces the
-- checkpoint's session. The checkpoint seq never goes back within a session.
--
-- Reply: {added, skipped}
local ck = KEYS[1]
local session = ARGV[1]
local cur = redis.call('HMGET', ck, 'session', 'seq')
local same = cur[1] == session
local ckseq = -1
if same then
  ckseq = tonumber(cur[2]) or -1
end
local last = ckseq

local nstreams = tonumber(ARGV[8])
local version = ARGV[9]
local bot = ARGV[6]
local shard = ARGV[7]
local base = 10 + 2 * nstreams
local added, skipped = 0, 0
local i = base
local n = #ARGV
while i + 6 <= n do
  local seq = tonumber(ARGV[i + 1])
  if seq <= last then
    skipped = skipped + 1
  else
    last = seq
    local si = tonumber(ARGV[i])
    local kind = ARGV[10 + 2 * (si - 1)]
    local args = {'XADD', KEYS[1 + si]}
    if kind ~= '' then
      args[#args + 1] = kind
      args[#args + 1] = '~'
      args[#args + 1] = ARGV[11 + 2 * (si - 1)]
    end
    args[#args + 1] = '*'
    args[#args + 1] = 'v'
    args[#args + 1] = version
    args[#args + 1] = 't'
    args[#args + 1] = ARGV[i + 2]
    args[#args + 1] = 'd'
    args[#args + 1] = ARGV[i + 3]
    args[#args + 1] = 'bot'
    args[#args + 1] = bot
    args[#args + 1] = 'shard'
    args[#args + 1] = shard
    args[#args + 1] = 'session'
    args[#args + 1] = session
    args[#args + 1] = 'seq'
    args[#args + 1] = ARGV[i + 1]
    if ARGV[i + 4] ~= '' then
      args[#args + 1] = 'guild'
      args[#args + 1] = ARGV[i + 4]
    end
    if ARGV[i + 5] ~= '' then
      args[#args + 1] = 'before'
      args[#args + 1] = ARGV[i + 5]
    end
    args[#args + 1] = 'at'
    args[#args + 1] = ARGV[i + 6]
    redis.call(unpack(args))
    added = added + 1
  end
  i = i + 7
end

local newseq = ARGV[2]
if same and tonumber(newseq) < ckseq then
  newseq = cur[2]
end
redis.call('HSET', ck, 'session', session, 'seq', newseq,
  'resume_url', ARGV[3], 'shards', ARGV[4], 'intents', ARGV[5])
return {added, skipped}
