-- publish: append batches of shards' dispatches to their streams and
-- advance each shard's checkpoint, atomically: one call carries one section
-- per shard batch (all keys of a bot share its {bot:B} hash tag, so the
-- sections of one bot's shards go in one call, also on Redis Cluster).
--
-- The call: KEYS are the sections' keys one after the other; ARGV the
-- sections' arguments one after the other, then the table of contents:
-- per section i its key count and argument count, then the number of
-- sections N:  sec1 args .. secN args, nk1, na1, .. nkN, naN, N.
-- Each section is checked (fence, checkpoint expectation) and written on
-- its own, in order: a refused section writes nothing and does not stop
-- the others. Reply: the sections' five values one after the other (5 × N).
--
-- One section, with its keys and arguments numbered from 1:
-- KEYS[1]      the shard's checkpoint hash (fields session, seq, resume_url,
--              shards, intents)
-- KEYS[2..S+1] the route streams of this batch
-- KEYS[S+2]    the shard's lease hash (field fence), only when ARGV[16] is
--              not empty
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
-- ARGV[12] expected checkpoint session: what the caller believes is stored
--          ("" = no expectation, nothing is checked but the type)
-- ARGV[13] expected checkpoint seq (0 = nothing of this session stored yet)
-- ARGV[14] "w" when the caller wrote the expected checkpoint itself (a
--          stored seq above it is then refused too), "r" when it only
--          resumed from it
-- ARGV[15] repair: "" or the refusal status the caller allows this call to
--          overwrite (the checkpoint is then set to ARGV[1]/ARGV[2])
-- ARGV[16] the fencing number of the caller's lease; "" = no fleet, no check
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
-- Before writing anything the stored checkpoint is compared with the
-- caller's expectation. The batch is refused, and nothing written, when the
-- stored checkpoint is
--   wrongtype  not a hash
--   garbage    a hash whose session or seq is not what feathery writes
--   gone       absent while the caller wrote one ("w", expected seq > 0)
--   behind     of the expected session with a lower seq, or of another
--              session while the caller expects one of its own: Redis lost
--              writes (failover to a replica that missed them, restart from
--              an older file)
--   ahead      of the expected session with a seq above both what the caller
--              wrote ("w" only) and this batch's last seq
-- A call whose ARGV[15] names the status found overwrites the checkpoint
-- with ARGV[1]/ARGV[2] (no "never back" rule) and appends its entries above
-- the expected seq.
--
-- Fencing comes first: with ARGV[16] set, the batch is refused (status
-- "fenced", nothing written) when the lease KEYS[S+2] holds another fence:
-- a node that lost the shard's lease (paused, cut off) cannot write after
-- another node took it. A lease that does not exist at all (Redis lost its
-- data; taking a lease always writes it) is nobody else's: the batch goes.
--
-- A section's reply: added, skipped, status, session, seq: status "ok"
-- (also after a repair) with the checkpoint as written, or the refusal with
-- what the checkpoint held ("" for absent fields and a key of another
-- type); 0, 0, "fenced", lease fence, lease node when fenced.

-- One argument table, reused by every XADD of the call: the fields common
-- to a run of entries are set once, the per-entry values overwritten in place.
local args = {'XADD'}

-- publish runs one section: its keys are KEYS[kb+1..kb+nk], its arguments
-- ARGV[ab+1..ab+na]; it returns the section's five reply values.
local function publish(kb, ab, nk, na)
  local fence = ARGV[ab + 16]
  if fence ~= '' then
    local lease = KEYS[kb + nk]
    local held = redis.call('HGET', lease, 'fence')
    if held and held ~= fence then
      return 0, 0, 'fenced', held, redis.call('HGET', lease, 'node') or ''
    end
  end

  local ck = KEYS[kb + 1]
  local session = ARGV[ab + 1]
  local expect = ARGV[ab + 12]
  local expseq = tonumber(ARGV[ab + 13]) or 0
  local status = 'ok'
  local ssess, sseq = '', ''
  -- The checkpoint's other fields are read too: only the ones that change
  -- are written back.
  local cur = redis.pcall('HMGET', ck, 'session', 'seq', 'resume_url', 'shards', 'intents')
  if cur.err then
    status = 'wrongtype'
  else
    ssess, sseq = cur[1] or '', cur[2] or ''
    if (cur[1] and (ssess == '' or not cur[2])) or (cur[2] and (not cur[1] or not string.match(sseq, '^%d+$') or #sseq > 18)) then
      status = 'garbage'
    elseif expect ~= '' and expseq > 0 then
      if not cur[1] then
        if ARGV[ab + 14] == 'w' then status = 'gone' end
      elseif ssess ~= expect then
        status = 'behind'
      else
        local s = tonumber(sseq)
        if s < expseq then
          status = 'behind'
        elseif s > expseq and s > tonumber(ARGV[ab + 2]) and ARGV[ab + 14] == 'w' then
          -- Up to this batch's own last seq it may be this very batch, sent
          -- before by a call whose reply was lost.
          status = 'ahead'
        end
      end
    end
  end
  local repair = false
  if status ~= 'ok' then
    if status ~= ARGV[ab + 15] then
      return 0, 0, status, ssess, sseq
    end
    repair = true
    local found = status
    status = 'ok'
    if found == 'wrongtype' or found == 'garbage' then
      redis.call('DEL', ck)
      cur = {}
    end
  end
  local same = ssess == session
  local ckseq = -1
  if repair then
    if expect == session then ckseq = expseq end
  elseif same then
    ckseq = tonumber(sseq) or -1
  end

  local nstreams = tonumber(ARGV[ab + 8])
  local nentries = tonumber(ARGV[ab + 10])
  local stride = 5
  if nstreams > 1 then stride = 6 end
  local base = 17 + 2 * nstreams
  local n = na
  local bpos = base + stride * nentries
  local nextb = -1
  if bpos < n then nextb = tonumber(ARGV[ab + bpos]) end

  -- Ascending seqs whose first is above the checkpoint are all new: no
  -- per-entry check.
  local check = true
  if ARGV[ab + 11] == '1' and nentries > 0 then
    local first = base
    if stride == 6 then first = base + 1 end
    if tonumber(ARGV[ab + first]) > ckseq then check = false end
  end

  local last = ckseq
  local added, skipped = 0, 0
  local cur_si = -1
  local fixed = 0 -- index of the last common argument
  local i = base
  for e = 1, nentries do
    local si = 1
    if stride == 6 then
      si = tonumber(ARGV[ab + i])
      i = i + 1
    end
    -- ARGV[ab + i] seq, [i+1] t, [i+2] d, [i+3] guild, [i+4] at
    local before = nil
    if nextb == e then
      before = ARGV[ab + bpos + 1]
      bpos = bpos + 2
      nextb = -1
      if bpos < n then nextb = tonumber(ARGV[ab + bpos]) end
    end
    local new = true
    if check then
      local seq = tonumber(ARGV[ab + i])
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
        args[k] = KEYS[kb + 1 + si]
        local kind = ARGV[ab + 15 + 2 * si]
        if kind ~= '' then
          args[k + 1] = kind
          args[k + 2] = '~'
          args[k + 3] = ARGV[ab + 16 + 2 * si]
          k = k + 3
        end
        args[k + 1] = '*'
        args[k + 2] = 'v'
        args[k + 3] = ARGV[ab + 9]
        args[k + 4] = 't'
        args[k + 6] = 'd'
        args[k + 8] = 'bot'
        args[k + 9] = ARGV[ab + 6]
        args[k + 10] = 'shard'
        args[k + 11] = ARGV[ab + 7]
        args[k + 12] = 'session'
        args[k + 13] = session
        args[k + 14] = 'seq'
        fixed = k
      end
      local k = fixed
      args[k + 5] = ARGV[ab + i + 1]
      args[k + 7] = ARGV[ab + i + 2]
      args[k + 15] = ARGV[ab + i]
      k = k + 15
      if ARGV[ab + i + 3] ~= '' then
        args[k + 1] = 'guild'
        args[k + 2] = ARGV[ab + i + 3]
        k = k + 2
      end
      if before then
        args[k + 1] = 'before'
        args[k + 2] = before
        k = k + 2
      end
      args[k + 1] = 'at'
      args[k + 2] = ARGV[ab + i + 4]
      redis.call(unpack(args, 1, k + 2))
      added = added + 1
    end
    i = i + 5
  end

  local newseq = ARGV[ab + 2]
  if same and not repair and tonumber(newseq) < ckseq then
    newseq = sseq
  end
  if cur.err then cur = {} end
  local hset = {'HSET', ck, 'seq', newseq}
  if cur[1] ~= session then
    hset[#hset + 1], hset[#hset + 2] = 'session', session
  end
  if cur[3] ~= ARGV[ab + 3] then
    hset[#hset + 1], hset[#hset + 2] = 'resume_url', ARGV[ab + 3]
  end
  if cur[4] ~= ARGV[ab + 4] then
    hset[#hset + 1], hset[#hset + 2] = 'shards', ARGV[ab + 4]
  end
  if cur[5] ~= ARGV[ab + 5] then
    hset[#hset + 1], hset[#hset + 2] = 'intents', ARGV[ab + 5]
  end
  redis.call(unpack(hset))
  return added, skipped, status, session, newseq
end

local nsec = tonumber(ARGV[#ARGV])
local toc = #ARGV - 2 * nsec - 1
local reply = {}
local kb, ab = 0, 0
for s = 1, nsec do
  local nk = tonumber(ARGV[toc + 2 * s - 1])
  local na = tonumber(ARGV[toc + 2 * s])
  local r1, r2, r3, r4, r5 = publish(kb, ab, nk, na)
  local o = 5 * (s - 1)
  reply[o + 1], reply[o + 2], reply[o + 3], reply[o + 4], reply[o + 5] = r1, r2, r3, r4, r5
  kb, ab = kb + nk, ab + na
end
return reply
