--[[
  Creates an admin account unless its name is taken (by any account, active or disabled).

  Input:
    KEYS[1] account hash   <prefix>{admin}:acct:<name>
    KEYS[2] token index    <prefix>{admin}:tok:<token hash>
    KEYS[3] account names  <prefix>{admin}:names (set)

    ARGV[1] name
    ARGV[2] createdAt (epoch ms)
    ARGV[3] token hash (hex SHA-256; the token itself is never sent here)
    ARGV[4] TOTP secret (base32)

  Output: code
     1 created
     0 the name is taken
    -1 the token hash is already indexed (a collision: the caller draws a new token)
]]
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return -1
end
redis.call('HSET', KEYS[1], 'c', ARGV[2], 'h', ARGV[3], 's', ARGV[4], 'l', '-1', 'f', '0', 'u', '0')
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
