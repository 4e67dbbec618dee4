--[[
  Ends an active task at most once and appends its task event to the revocation feed, atomically: a task never
  reads as ended without its event, and no event is emitted for a task that did not end here.

  KEYS[1..2] live in the task's hash slot ({t:<task>}); KEYS[3..5] are global keys. The script is atomic across
  all of them on a standalone Redis (the supported deployment). Redis Cluster would need the global writes split
  out of this script (made at-least-once through an outbox); that is not supported yet.

  Input:
    KEYS[1] task hash             <prefix>{t:<task>}:task
    KEYS[2] task credential zset  <prefix>{t:<task>}:creds   (member: credential id, score: expiresAt; a task's
                                                             only credential is in the task hash instead: k, x)
    KEYS[3] revocation stream     <prefix>revocations
    KEYS[4] tasks ending          <prefix>tasks:ending       (zset: task id -> endedAt, fan-out unfinished)
    KEYS[5] task deadlines        <prefix>tasks:deadlines    (zset: task id -> deadline, active tasks only), as
                                                             brokers before the bucketed task index wrote it: the
                                                             task leaves it (the task index needs nothing here)

    ARGV[1] now, epoch seconds, from the broker's (injectable) clock
    ARGV[2] retention, seconds a record is kept after it has expired
    ARGV[3] task id
    ARGV[4] status: completed | expired | revoked
    ARGV[5] reason code
    ARGV[6] endedAt, epoch seconds

  Output: { code, task hash as name value pairs }
    code  1 ended by this call: status, endedAt and endReason set, event appended, queued for fan-out
          0 the task had ended already: nothing written
         -1 no such task (or dropped: past deadline + retention); its queue entries are removed
]]
local now = tonumber(ARGV[1])
local retention = tonumber(ARGV[2])
local taskId = ARGV[3]

local fields = redis.call('HGETALL', KEYS[1])
local task = {}
for i = 1, #fields, 2 do
  task[fields[i]] = fields[i + 1]
end
if #fields == 0 or now >= tonumber(task['d']) + retention then
  redis.call('ZREM', KEYS[4], taskId)
  redis.call('ZREM', KEYS[5], taskId)
  return { -1, {} }
end
if task['s'] ~= 'active' then
  return { 0, fields }
end

redis.call('HSET', KEYS[1], 's', ARGV[4], 'e', ARGV[6], 'r', ARGV[5])
-- The event's expiresAt: when the last credential of the task expires anyway (the deadline when it has none).
local expiresAt = task['d']
local latest = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #latest == 2 then
  expiresAt = latest[2]
end
-- a task's only credential is kept in the task hash (k id, x expiresAt) until a second one joins
if task['k'] and (#latest ~= 2 or tonumber(task['x']) > tonumber(expiresAt)) then
  expiresAt = task['x']
end
redis.call('XADD', KEYS[3], '*', 'k', 't', 't', taskId, 'x', expiresAt, 'r', ARGV[5], 'v', ARGV[6])
redis.call('ZADD', KEYS[4], ARGV[6], taskId)
redis.call('ZREM', KEYS[5], taskId)
return { 1, redis.call('HGETALL', KEYS[1]) }
