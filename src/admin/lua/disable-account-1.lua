--[[
  Disables an admin account for good (its token stops authenticating; the name stays taken).

  Input:
    KEYS[1] account hash   <prefix>{admin}:acct:<name>
    ARGV[1] disabledAt (epoch ms)

  Output: code
     1 disabled by this call
     0 it was already disabled
    -1 no such account
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
if redis.call('HSETNX', KEYS[1], 'd', ARGV[1]) == 1 then
  return 1
end
return 0
