--[[
  Deletes one registration entry and, when it existed, sets the entries version to a new random value (see
  put-entry-2.lua): a replica's cached entries never outlive a delete past its next issuance.

  Input:
    KEYS[1] entries hash          <prefix>entries
    KEYS[2] entries version       <prefix>entries:version

    ARGV[1] entry id
    ARGV[2] the new entries version (random)

  Output: 1 deleted, 0 no such entry
]]
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
if removed > 0 then
  redis.call('SET', KEYS[2], ARGV[2])
end
return removed
