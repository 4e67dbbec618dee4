--[[
  Creates or replaces one registration entry unless another entry has the same SPIFFE ID and the same
  set of selectors (order and repeats ignored). O(number of entries): entries are few and admin-made.

  Every write also sets the entries version to a new random value, so that every replica's in-process copy of
  the entries (read with the version in one MULTI) knows at once that it is stale.

  Input:
    KEYS[1] entries hash          <prefix>entries   (field: entry id, value: entry JSON)
    KEYS[2] entries version       <prefix>entries:version   (string: random, new on every write)

    ARGV[1] entry id
    ARGV[2] mode: create (the id must be unused) | replace (the entry must exist)
    ARGV[3] the new entry JSON
    ARGV[4] its SPIFFE ID
    ARGV[5] the new entries version (random)
    ARGV[6..] its selectors

  Output: code
     1 written
     0 replace: the entry does not exist (any more)
    -1 another entry has this SPIFFE ID and these selectors
    -2 create: the id is taken
]]
local id = ARGV[1]
local mode = ARGV[2]
local spiffeId = ARGV[4]

local wanted = {}
local wantedCount = 0
for i = 6, #ARGV do
  if not wanted[ARGV[i]] then
    wanted[ARGV[i]] = true
    wantedCount = wantedCount + 1
  end
end

local exists = redis.call('HEXISTS', KEYS[1], id) == 1
if mode == 'create' and exists then
  return -2
end
if mode == 'replace' and not exists then
  return 0
end

local function sameSelectors(list)
  local seen = {}
  local count = 0
  for _, selector in ipairs(list) do
    if not wanted[selector] then
      return false
    end
    if not seen[selector] then
      seen[selector] = true
      count = count + 1
    end
  end
  return count == wantedCount
end

local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i] ~= id then
    local ok, entry = pcall(cjson.decode, all[i + 1])
    if ok and type(entry) == 'table' and entry['spiffeId'] == spiffeId and type(entry['selectors']) == 'table'
      and sameSelectors(entry['selectors']) then
      return -1
    end
  end
end

redis.call('HSET', KEYS[1], id, ARGV[3])
redis.call('SET', KEYS[2], ARGV[5])
return 1
