--[[
  Revokes one live credential and appends its credential event, atomically: a revocation is never recorded
  without its event, and no event is emitted for a credential that this call did not revoke.

  KEYS[1..2] live in the task's hash slot ({t:<task>}); KEYS[3] is global. The script is atomic on a standalone
  Redis (the supported deployment). Redis Cluster would need the event split out of this script (made
  at-least-once through an outbox); that is not supported yet.

  Input:
    KEYS[1] credential hash       <prefix>{t:<task>}:cred:<id>
    KEYS[2] task hash             <prefix>{t:<task>}:task
    KEYS[3] revocation stream     <prefix>revocations

    ARGV[1] now, epoch seconds, from the broker's (injectable) clock
    ARGV[2] retention, seconds a record is kept after it has expired
    ARGV[3] task id
    ARGV[4] credential id
    ARGV[5] reason code
    ARGV[6] revokedAt, epoch seconds

  A task's only credential may be kept in the task hash (k its id; y, x, v... its record) rather than in KEYS[1]:
  it is revoked there.

  Output: { code, credential hash as name value pairs (empty when the record is in the task hash), task hash as
            name value pairs }
    code  1 revoked by this call
          0 not revoked: it already was, it has expired (expiresAt <= now), or its task is not active
            (ended, or past its deadline); nothing written
         -1 no such credential (or dropped: past expiry + retention)
]]
local now = tonumber(ARGV[1])
local retention = tonumber(ARGV[2])

local fields = redis.call('HGETALL', KEYS[1])
local taskFields = redis.call('HGETALL', KEYS[2])
local task = {}
for i = 1, #taskFields, 2 do
  task[taskFields[i]] = taskFields[i + 1]
end
-- where the record is: its own hash, or the task hash (field names there: y type, x expiresAt, v revokedAt)
local recordKey, credential = KEYS[1], {}
if #fields == 0 and task['k'] == ARGV[4] and task['y'] then
  recordKey = KEYS[2]
  credential = { y = task['y'], e = task['x'], v = task['v'] }
else
  for i = 1, #fields, 2 do
    credential[fields[i]] = fields[i + 1]
  end
end
if not credential['e'] or now >= tonumber(credential['e']) + retention then
  return { -1, {}, {} }
end
if credential['v'] or tonumber(credential['e']) <= now or task['s'] ~= 'active' or now >= tonumber(task['d']) then
  return { 0, fields, taskFields }
end

redis.call('HSET', recordKey, 'v', ARGV[6], 'w', ARGV[5])
redis.call('XADD', KEYS[3], '*', 'k', 'c', 'c', ARGV[4], 'y', credential['y'], 't', ARGV[3], 'x', credential['e'],
  'r', ARGV[5], 'v', ARGV[6])
return { 1, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]) }
