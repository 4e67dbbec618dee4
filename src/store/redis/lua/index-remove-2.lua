--[[
  Removes members from a listing index: its buckets (bucket-index.lua) and the single zset brokers before the
  buckets wrote (read until it is empty).

  Input:
    KEYS[1] the index's directory (its buckets are <KEYS[1]>:<name>)
    KEYS[2] the earlier single-zset index

    ARGV[1..] the members

  Output: how many were removed.
]]
-- @include bucket-index.lua

local removed = 0
for _, member in ipairs(ARGV) do
  removed = removed + indexRemove(KEYS[1], member) + redis.call('ZREM', KEYS[2], member)
end
return removed
