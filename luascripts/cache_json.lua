-- cache_json.lua: helpers prepended to every cache script (not a script of
-- its own). They split a JSON object into its top-level members without
-- decoding any value, so snowflakes stay strings, numbers keep their digits
-- and empty arrays stay [] — cjson is never used by the cache.

-- index of the closing quote of the JSON string opening at i, or nil
local function json_str_end(s, i)
  local j = i + 1
  while true do
    local q = string.find(s, '["\\]', j)
    if not q then return nil end
    if string.sub(s, q, q) == '"' then return q end
    j = q + 2
  end
end

-- index of the last byte of the JSON value starting at i, or nil
local function json_value_end(s, i)
  local c = string.sub(s, i, i)
  if c == '"' then return json_str_end(s, i) end
  if c == '{' or c == '[' then
    local depth, j = 0, i
    while true do
      local p = string.find(s, '[%[%]{}"]', j)
      if not p then return nil end
      local ch = string.sub(s, p, p)
      if ch == '"' then
        p = json_str_end(s, p)
        if not p then return nil end
      elseif ch == '{' or ch == '[' then
        depth = depth + 1
      else
        depth = depth - 1
        if depth == 0 then return p end
      end
      j = p + 1
    end
  end
  local p = string.find(s, '[,}%]%s]', i)
  if not p then return #s end
  return p - 1
end

-- keys (raw, quoted) and raw values of the JSON object s, in order; nil when
-- s is not an object. Any JSON; json_fields is the same, faster on the
-- common shape.
local function json_fields_general(s)
  if type(s) ~= 'string' then return nil end
  local i = string.find(s, '[^%s]')
  if not i or string.sub(s, i, i) ~= '{' then return nil end
  local keys, vals = {}, {}
  i = i + 1
  while true do
    i = string.find(s, '[^%s,]', i)
    if not i then return nil end
    local c = string.sub(s, i, i)
    if c == '}' then return keys, vals end
    if c ~= '"' then return nil end
    local ke = json_str_end(s, i)
    if not ke then return nil end
    local colon = string.find(s, '[^%s]', ke + 1)
    if not colon or string.sub(s, colon, colon) ~= ':' then return nil end
    local vs = string.find(s, '[^%s]', colon + 1)
    if not vs then return nil end
    local ve = json_value_end(s, vs)
    if not ve then return nil end
    keys[#keys + 1] = string.sub(s, i, ke)
    vals[#vals + 1] = string.sub(s, vs, ve)
    i = ve + 1
  end
end

-- string functions as locals: a global lookup per call costs as much as
-- the call itself in the loops below
local sfind, sbyte, ssub, smatch = string.find, string.byte, string.sub, string.match

-- index of the last byte of the array or object opening at i in s, which
-- has no backslash (so a string ends at the next quote); nil if unclosed
local function json_nested_end(s, i)
  local depth, j = 0, i
  while true do
    local p = sfind(s, '[%[%]{}"]', j)
    if not p then return nil end
    local ch = sbyte(s, p)
    if ch == 34 then
      p = sfind(s, '"', p + 1, true)
      if not p then return nil end
    elseif ch == 91 or ch == 123 then
      depth = depth + 1
    else
      depth = depth - 1
      if depth == 0 then return p end
    end
    j = p + 1
  end
end

-- json_scan walks a compact object (no whitespace between tokens) without
-- a backslash — what Discord sends and the cache stores — with plain
-- searches and byte tests, calling f(ks, ke, vs, ve) for each member (key
-- with its quotes at ks..ke, raw value at vs..ve). It returns the index of
-- the closing brace, or nil when s has another shape (then the general
-- scanner is needed). Lua pattern matching costs per byte scanned, plain
-- find does not.
local function json_scan(s, f)
  if type(s) ~= 'string' or sbyte(s, 1) ~= 123 or sfind(s, '\\', 1, true) then return nil end
  local i = 2
  local c = sbyte(s, i)
  if c == 125 then return i end
  while true do
    if c ~= 34 then return nil end
    local ke = sfind(s, '"', i + 1, true)
    if not ke or sbyte(s, ke + 1) ~= 58 then return nil end
    local vs = ke + 2
    local v = sbyte(s, vs)
    local ve
    if v == nil or v <= 32 then
      return nil
    elseif v == 34 then
      ve = sfind(s, '"', vs + 1, true)
    elseif v == 91 or v == 123 then
      ve = json_nested_end(s, vs)
    else
      ve = smatch(s, '^[^,}%]%s]*()', vs) - 1
    end
    if not ve then return nil end
    f(i, ke, vs, ve)
    c = sbyte(s, ve + 1)
    if c == 125 then return ve + 1 end
    if c ~= 44 then return nil end
    i = ve + 2
    c = sbyte(s, i)
  end
end

-- json_fields_general's result, by json_scan when s has its shape
local function json_fields(s)
  local keys, vals, nf = {}, {}, 0
  local close = json_scan(s, function(ks, ke, vs, ve)
    nf = nf + 1
    keys[nf] = ssub(s, ks, ke)
    vals[nf] = ssub(s, vs, ve)
  end)
  if close then return keys, vals end
  return json_fields_general(s)
end

-- the raw value of the top-level member name (unquoted) of object s, or nil
local function json_get(s, name)
  local keys, vals = json_fields(s)
  if not keys then return nil end
  local q = '"' .. name .. '"'
  for i = 1, #keys do
    if keys[i] == q then return vals[i] end
  end
  return nil
end

-- old with the top-level members of new written over it. Either side that
-- is not an object yields new. When both have json_scan's shape the result
-- is new followed by the members only old has (in their order), otherwise
-- old's members in their order with new's values, then those only new has.
local function json_merge(old, new)
  if not old then return new end
  local nkeys = {}
  local nclose = json_scan(new, function(ks, ke) nkeys[ssub(new, ks, ke)] = true end)
  if nclose then
    local kept, nk = {}, 0
    local oclose = json_scan(old, function(ks, ke, vs, ve)
      if not nkeys[ssub(old, ks, ke)] then
        nk = nk + 1
        kept[nk] = ssub(old, ks, ve)
      end
    end)
    if oclose then
      if nk == 0 then return ssub(new, 1, nclose) end
      local sep = ','
      if nclose == 2 then sep = '' end
      return ssub(new, 1, nclose - 1) .. sep .. table.concat(kept, ',') .. '}'
    end
  end
  local ok, ov = json_fields(old)
  if not ok then return new end
  local nk, nv = json_fields(new)
  if not nk then return new end
  local at = {}
  for i = 1, #ok do at[ok[i]] = i end
  for i = 1, #nk do
    local p = at[nk[i]]
    if p then
      ov[p] = nv[i]
    else
      ok[#ok + 1] = nk[i]
      ov[#ov + 1] = nv[i]
      at[nk[i]] = #ok
    end
  end
  -- one concatenation: every intermediate string would be hashed too
  local parts, np = { '{' }, 1
  for i = 1, #ok do
    if i > 1 then
      np = np + 1
      parts[np] = ','
    end
    parts[np + 1] = ok[i]
    parts[np + 2] = ':'
    parts[np + 3] = ov[i]
    np = np + 3
  end
  parts[np + 1] = '}'
  return table.concat(parts)
end

-- object s without its top-level members listed in drops: a string of
-- `"key":value` (or `"key":*`, any value) each between commas, with a
-- leading comma; s as it is when it is not an object, or when it holds
-- none of the texts of probes (a list: `"key":value`, `"key":` for the
-- any-value ones), the common case, found without scanning s
local function json_drop(s, drops, probes)
  local hit = false
  for i = 1, #probes do
    if sfind(s, probes[i], 1, true) then
      hit = true
      break
    end
  end
  if not hit then return s end
  local keys, vals = json_fields(s)
  if not keys then return s end
  local parts, np = {}, 0
  for i = 1, #keys do
    local k = keys[i]
    if not sfind(drops, ',' .. k .. ':' .. vals[i] .. ',', 1, true) and not sfind(drops, ',' .. k .. ':*,', 1, true) then
      np = np + 1
      parts[np] = k .. ':' .. vals[i]
    end
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

-- HSET key with the field/value pairs ARGV[from .. from+2n-1], in slices
-- small enough for unpack
local function hset_args(key, from, n)
  local i, last = from, from + 2 * n - 1
  while i <= last do
    local j = math.min(i + 399, last)
    redis.call('HSET', key, unpack(ARGV, i, j))
    i = j + 1
  end
end

-- whether v, a redis.pcall reply, is an error reply
local function failed(v) return type(v) == 'table' and v.err ~= nil end

-- DEL-free "read then forget": value or nil (Redis false becomes nil)
local function get_or_nil(v)
  if v == false then return nil end
  return v
end

-- json_merge(old, new) when nkeys lists new's top-level keys, each with its
-- quotes, concatenated (as the caller that wrote new knows them): old is
-- scanned, new is not. nkeys "" (or a new with a backslash, or not ending
-- in its closing brace) takes json_merge.
local function json_merge_keys(old, new, nkeys)
  if nkeys == '' or not old or sbyte(new, #new) ~= 125 or sfind(new, '\\', 1, true) then
    return json_merge(old, new)
  end
  local kept, nk = {}, 0
  local oclose = json_scan(old, function(ks, ke, vs, ve)
    if not sfind(nkeys, ssub(old, ks, ke), 1, true) then
      nk = nk + 1
      kept[nk] = ssub(old, ks, ve)
    end
  end)
  if not oclose then return json_merge(old, new) end
  if nk == 0 then return new end
  local sep = ','
  if #new == 2 then sep = '' end
  return ssub(new, 1, #new - 1) .. sep .. table.concat(kept, ',') .. '}'
end

-- old with new written over it, where nkeys names (each quoted,
-- concatenated) every top-level key of the object new was made from, also
-- those new was then stored without (a member's defaults): old's members
-- named there go, the others follow new's. new is compact at its top level
-- and ends in its closing brace; old any object (nil: new).
local function json_merge_named(old, new, nkeys)
  if not old then return new end
  if sbyte(new, #new) ~= 125 then return json_merge(old, new) end
  local kept, nk = {}, 0
  local oclose = json_scan(old, function(ks, ke, vs, ve)
    if not sfind(nkeys, ssub(old, ks, ke), 1, true) then
      nk = nk + 1
      kept[nk] = ssub(old, ks, ve)
    end
  end)
  if not oclose then
    local ok, ov = json_fields(old)
    if not ok then return new end
    kept, nk = {}, 0
    for i = 1, #ok do
      if not sfind(nkeys, ok[i], 1, true) then
        nk = nk + 1
        kept[nk] = ok[i] .. ':' .. ov[i]
      end
    end
  end
  if nk == 0 then return new end
  local sep = ','
  if #new == 2 then sep = '' end
  return ssub(new, 1, #new - 1) .. sep .. table.concat(kept, ',') .. '}'
end

-- pending_leaves records the user ids of removed (members whose
-- membership the call ended) in the set pending (guild slot), then replies
-- every recorded id that is not in members now, dropping the others from
-- pending: the caller removes the guild from those users' mutual guilds
-- (other slots, another round trip) and then SREMs them from pending. An
-- id stays recorded until that second step is done, so a batch retried
-- after it failed completes it.
local function pending_leaves(reply, removed, pending, members)
  local i = 1
  while i <= #removed do
    local j = math.min(i + 3999, #removed)
    redis.call('SADD', pending, unpack(removed, i, j))
    i = j + 1
  end
  local ids = redis.call('SMEMBERS', pending)
  for k = 1, #ids do
    if redis.call('HEXISTS', members, ids[k]) == 1 then
      redis.call('SREM', pending, ids[k])
    else
      reply[#reply + 1] = ids[k]
    end
  end
  return reply
end
