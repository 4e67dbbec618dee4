--[[
  Applies one TOTP attempt to an admin account, atomically: two replicas can never both accept one code.
  The client has matched the code against the secret (Redis Lua has no HMAC-SHA-1 helper); this script keeps
  the state: the last accepted step, consecutive failures and the lock. Same rule as applyOtpAttempt in
  src/admin/accounts.ts.

  Input:
    KEYS[1] account hash   <prefix>{admin}:acct:<name>   (l last step, f failures, u locked until, d disabled at)

    ARGV[1] now (epoch ms, the broker's injected clock)
    ARGV[2] the time step the code matched, or -1 when it matched none (wrong or malformed)
    ARGV[3] failures that lock the account
    ARGV[4] lock duration (ms)

  Output: { code, value }
     1 accepted                      value: the step
     0 wrong code                    value: consecutive failures
    -1 replayed (step not after the last accepted one)   value: consecutive failures
    -2 locked, already              value: locked until (ms)
    -3 locked by this failure       value: locked until (ms)
    -4 no such account, or disabled
]]
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'd') == 1 then
  return { -4, 0 }
end
local now = tonumber(ARGV[1])
local step = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'l', 'f', 'u')
local lastStep = tonumber(state[1]) or -1
local failures = tonumber(state[2]) or 0
local lockedUntil = tonumber(state[3]) or 0

if lockedUntil > now then
  return { -2, lockedUntil }
end
if step >= 0 and step > lastStep then
  redis.call('HSET', KEYS[1], 'l', ARGV[2], 'f', '0', 'u', '0')
  return { 1, step }
end
failures = failures + 1
if failures >= tonumber(ARGV[3]) then
  local until_ = now + tonumber(ARGV[4])
  redis.call('HSET', KEYS[1], 'f', '0', 'u', string.format('%d', until_))
  return { -3, until_ }
end
redis.call('HSET', KEYS[1], 'f', tostring(failures))
if step >= 0 then
  return { -1, failures }
end
return { 0, failures }
