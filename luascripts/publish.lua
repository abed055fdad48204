-- publish: append one batch of a shard's dispatches to their streams and
-- advance the shard's checkpoint, atomically.
--
-- KEYS[1]      the shard's checkpoint hash (fields session, seq, resume_url,
--              shards, intents)
-- KEYS[2..S+1] the route streams of this batch
--
-- ARGV[1]  session id of every entry of the batch
-- ARGV[2]  seq of the batch's last event (the new checkpoint seq)
-- ARGV[3]  resume_gateway_url
-- ARGV[4]  shard count
-- ARGV[5]  intents
-- ARGV[6]  bot name
-- ARGV[7]  shard id
-- ARGV[8]  S, the number of streams
-- ARGV[9]  "v" envelope version
-- ARGV[10] E, the number of entries
-- ARGV[11] "1" when the entries' seqs strictly increase, else "0"
-- then per stream i (1..S): trim kind ("" | "MAXLEN" | "MINID"), trim threshold
-- then per entry: [stream index (1..S), only when S > 1,] seq, t, d,
--                 guild ("" = none), at (unix ms)
-- then the before images: pairs (entry number 1..E, before JSON) in entry
-- order, for the entries that have one
--
-- Every argument is a string Lua takes in (and hashes byte by byte), so the
-- layout sends nothing an entry does not need.
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

local nstreams = tonumber(ARGV[8])
local nentries = tonumber(ARGV[10])
local stride = 5
if nstreams > 1 then stride = 6 end
local base = 12 + 2 * nstreams
local n = #ARGV
local bpos = base + stride * nentries
local nextb = -1
if bpos < n then nextb = tonumber(ARGV[bpos]) end

-- Ascending seqs whose first is above the checkpoint are all new: no
-- per-entry check.
local check = true
if ARGV[11] == '1' and nentries > 0 then
  local first = base
  if stride == 6 then first = base + 1 end
  if tonumber(ARGV[first]) > ckseq then check = false end
end

local last = ckseq
local added, skipped = 0, 0
-- One argument table, reused: the fields common to the batch are set once,
-- the per-entry values are overwritten in place.
local args = {'XADD'}
local cur_si = -1
local fixed = 0 -- index of the last common argument
local i = base
for e = 1, nentries do
  local si = 1
  if stride == 6 then
    si = tonumber(ARGV[i])
    i = i + 1
  end
  -- ARGV[i] seq, [i+1] t, [i+2] d, [i+3] guild, [i+4] at
  local before = nil
  if nextb == e then
    before = ARGV[bpos + 1]
    bpos = bpos + 2
    nextb = -1
    if bpos < n then nextb = tonumber(ARGV[bpos]) end
  end
  local new = true
  if check then
    local seq = tonumber(ARGV[i])
    if seq <= last then
      new = false
    else
      last = seq
    end
  end
  if not new then
    skipped = skipped + 1
  else
    if si ~= cur_si then
      cur_si = si
      local k = 2
      args[k] = KEYS[1 + si]
      local kind = ARGV[10 + 2 * si]
      if kind ~= '' then
        args[k + 1] = kind
        args[k + 2] = '~'
        args[k + 3] = ARGV[11 + 2 * si]
        k = k + 3
      end
      args[k + 1] = '*'
      args[k + 2] = 'v'
      args[k + 3] = ARGV[9]
      args[k + 4] = 't'
      args[k + 6] = 'd'
      args[k + 8] = 'bot'
      args[k + 9] = ARGV[6]
      args[k + 10] = 'shard'
      args[k + 11] = ARGV[7]
      args[k + 12] = 'session'
      args[k + 13] = session
      args[k + 14] = 'seq'
      fixed = k
    end
    local k = fixed
    args[k + 5] = ARGV[i + 1]
    args[k + 7] = ARGV[i + 2]
    args[k + 15] = ARGV[i]
    k = k + 15
    if ARGV[i + 3] ~= '' then
      args[k + 1] = 'guild'
      args[k + 2] = ARGV[i + 3]
      k = k + 2
    end
    if before then
      args[k + 1] = 'before'
      args[k + 2] = before
      k = k + 2
    end
    args[k + 1] = 'at'
    args[k + 2] = ARGV[i + 4]
    redis.call(unpack(args, 1, k + 2))
    added = added + 1
  end
  i = i + 5
end

local newseq = ARGV[2]
if same and tonumber(newseq) < ckseq then
  newseq = cur[2]
end
redis.call('HSET', ck, 'session', session, 'seq', newseq,
  'resume_url', ARGV[3], 'shards', ARGV[4], 'intents', ARGV[5])
return {added, skipped}
