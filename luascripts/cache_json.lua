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
-- s is not an object
local function json_fields(s)
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

-- old with the top-level members of new written over it (members only in
-- old are kept, in their order; new ones are appended). Either side that is
-- not an object yields new.
local function json_merge(old, new)
  if not old then return new end
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
  local parts = {}
  for i = 1, #ok do parts[i] = ok[i] .. ':' .. ov[i] end
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

-- DEL-free "read then forget": value or nil (Redis false becomes nil)
local function get_or_nil(v)
  if v == false then return nil end
  return v
end
