--[[
  Compare-and-append: adds one audit record to the stream only when the chain head is the one the client built
  the record on, so that every replica extends one chain. The client computes the record's SHA-256 (Redis Lua
  has only SHA-1); this script only checks that the record follows the current head and writes it.

  Input:
    KEYS[1] audit stream     <prefix>audit        (entry id `<seq>-0`, fields as ARGV[5..])
    KEYS[2] chain head hash  <prefix>audit:head   (seq, hash)

    ARGV[1] prev: the head hash the record was built on
    ARGV[2] the record's seq (the head's seq + 1)
    ARGV[3] the record's hash
    ARGV[4] MAXLEN to trim the stream to; 0 = never trim
    ARGV[5..] field, value, field, value... of the record

  Output: { code, seq, hash }
     1 appended; seq and hash are the new head
     0 the head has moved (another replica appended): seq and hash are the current head; rebuild and retry
    -1 the head is missing while the stream holds records (it was deleted): nothing is written
]]
local head = redis.call('HMGET', KEYS[2], 'seq', 'hash')
local seqText = '0'
local hash = string.rep('0', 64)
if head[1] then
  seqText = head[1]
  hash = head[2]
elseif redis.call('XLEN', KEYS[1]) > 0 then
  return { -1, '0', hash }
end

if hash ~= ARGV[1] or tonumber(seqText) + 1 ~= tonumber(ARGV[2]) then
  return { 0, seqText, hash }
end

local args = { 'XADD', KEYS[1] }
local maxLen = tonumber(ARGV[4])
if maxLen > 0 then
  table.insert(args, 'MAXLEN')
  table.insert(args, '=')
  table.insert(args, maxLen)
end
table.insert(args, ARGV[2] .. '-0')
for i = 5, #ARGV do
  table.insert(args, ARGV[i])
end
redis.call(unpack(args))
redis.call('HSET', KEYS[2], 'seq', ARGV[2], 'hash', ARGV[3])
return { 1, ARGV[2], ARGV[3] }
