--[[
  Compare-and-set of one key material value (a rotation of a key ring): writes only when the stored value is
  still the one the caller read, so that of two replicas rotating at once exactly one wins. Optionally deletes
  another key material value in the same step (a key a ring replaces for good).

  Input:
    KEYS[1] key material          <prefix>keys:<name>
    KEYS[2] key material to delete when written (the same key as KEYS[1]: nothing to delete)
    ARGV[1] the value the caller read ('' when it read none)
    ARGV[2] the new value

  Output: 1 written, 0 the stored value changed since it was read
]]
local current = redis.call('GET', KEYS[1])
if current == false then current = '' end
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
if KEYS[2] ~= KEYS[1] then redis.call('DEL', KEYS[2]) end
return 1
