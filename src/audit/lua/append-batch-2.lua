--[[
  Compare-and-append of a batch: adds consecutive audit records to the stream only when the chain head is the
  one the client built the first of them on, so that every replica extends one chain. The client computes each
  record's SHA-256 (Redis Lua has only SHA-1) and links them (each record's prev is the hash of the one before);
  this script only checks that the batch follows the current head and writes all of it, or nothing.

  Input:
    KEYS[1] audit stream     <prefix>audit        (entry id `<seq>-0`)
    KEYS[2] chain head hash  <prefix>audit:head   (seq, hash)

    ARGV[1] prev: the head hash the first record was built on
    ARGV[2] the first record's seq (the head's seq + 1); the others follow one by one
    ARGV[3] the last record's hash (the new head)
    ARGV[4] MAXLEN to trim the stream to; 0 = never trim
    ARGV[5] number of records, n >= 1
    ARGV[6] the batch's random id, kept with the head: a second run of the same call is recognised by it
    ARGV[7..] for each record in order: its number of field and value arguments m, then those m arguments

  Output: { code, seq, hash }
     1 appended (or already appended by an earlier run of the same call); seq and hash are the new head
     0 the head has moved (another replica appended): seq and hash are the current head; rebuild and retry
    -1 the head is missing while the stream holds records (it was deleted): nothing is written
]]
local head = redis.call('HMGET', KEYS[2], 'seq', 'hash', 'batch')
local seqText = '0'
local hash = string.rep('0', 64)
if head[1] then
  seqText = head[1]
  hash = head[2]
elseif redis.call('XLEN', KEYS[1]) > 0 then
  return { -1, '0', hash }
end

local first = tonumber(ARGV[2])
local count = tonumber(ARGV[5])
-- This very batch is already the head: the same call ran before (a command resent after its reply was lost).
-- Its records are in the stream; writing them again would record the same events twice. (Matched by the
-- batch's random id: two batches of identical events sealed in the same millisecond have the same hashes.)
if head[3] == ARGV[6] and hash == ARGV[3] and tonumber(seqText) == first + count - 1 then
  return { 1, seqText, hash }
end
if hash ~= ARGV[1] or tonumber(seqText) + 1 ~= first then
  return { 0, seqText, hash }
end

local maxLen = tonumber(ARGV[4])
local at = 7
local seq = first
for _ = 1, count do
  local m = tonumber(ARGV[at])
  local args = { 'XADD', KEYS[1] }
  if maxLen > 0 then
    table.insert(args, 'MAXLEN')
    table.insert(args, '=')
    table.insert(args, maxLen)
  end
  table.insert(args, string.format('%d-0', seq))
  for i = at + 1, at + m do
    table.insert(args, ARGV[i])
  end
  redis.call(unpack(args))
  at = at + m + 1
  seq = seq + 1
end
local last = string.format('%d', first + count - 1)
redis.call('HSET', KEYS[2], 'seq', last, 'hash', ARGV[3], 'batch', ARGV[6])
return { 1, last, ARGV[3] }
