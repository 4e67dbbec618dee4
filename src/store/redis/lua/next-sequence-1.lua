--[[
  The next value of a counter, at least a floor: a counter that must keep increasing even if Redis lost it
  (the bundle sequence, floored at the current time in milliseconds).

  Input:
    KEYS[1] counter               <prefix>seq:<name>
    ARGV[1] the floor (a non-negative integer, as a decimal string)

  Output: the new value
]]
local v = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if v < floor then
  redis.call('SET', KEYS[1], ARGV[1])
  return floor
end
return v
