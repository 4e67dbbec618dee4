--[[
  Records one issued credential in its task, opening the task when it does not exist, and indexes both.

  KEYS[1..3] live in the task's hash slot ({t:<task>}); KEYS[4..7] are global keys. The script is atomic across
  all of them on a standalone Redis (the supported deployment). Redis Cluster would need the global writes split
  out of this script (made at-least-once through an outbox); that is not supported yet.

  Input:
    KEYS[1] task hash             <prefix>{t:<task>}:task
    KEYS[2] task credential zset  <prefix>{t:<task>}:creds   (member: credential id, score: expiresAt); made when
                                                             a second credential joins: a task's first one is kept
                                                             in the task hash (k id, x expiresAt, and its record
                                                             under the names of INLINE) and moved here then, its
                                                             record to its own hash
    KEYS[3] credential hash       <prefix>{t:<task>}:cred:<id>  (written only for a task's second and later
                                                             credentials, and for the first when it moves out)
    KEYS[4] credential id index   <prefix>ci:<bucket of id>  (hash: credential id -> task id; no TTL, trimmed with
                                                             idx:creds)
    KEYS[5] credential listing    <prefix>ix:creds           (bucketed index, bucket-index.lua: member
                                                             <issuedAt>:<id>)
    KEYS[6] task listing          <prefix>ix:tasks           (bucketed index: member <createdAt>|<task>)
    KEYS[7] due directory         <prefix>tasks:due          (zset: task listing bucket -> lower bound of the
                                                             earliest deadline of its active tasks)

    ARGV[1] now, epoch seconds, from the broker's (injectable) clock: every decision uses it
    ARGV[2] retention, seconds a record is kept after it has expired
    ARGV[3] owner: the SPIFFE ID asking
    ARGV[4] origin of the task id: attestor | caller | generated
    ARGV[5] deadline, epoch seconds, used when this call opens the task
    ARGV[6] credential id
    ARGV[7] credential expiresAt, epoch seconds
    ARGV[8] task id
    ARGV[9] the credential's listing member
    ARGV[10] the task's listing member (createdAt = now), used when this call opens the task
    ARGV[11] the credential's SPIFFE ID: stored (field s) only when it is not the task owner's
    ARGV[12..] the other credential hash fields, as name value pairs (names of the credential hash)

  Output: { code, created (1 when this call opened the task), task hash as name value pairs }
    code  1 recorded
         -1 the task has ended (status not active, or now >= deadline): nothing written
         -2 the task belongs to another workload: nothing written
         -3 the credential would outlive the task's deadline: nothing written
]]
-- @include bucket-index.lua

local now = tonumber(ARGV[1])
local retention = tonumber(ARGV[2])
local owner = ARGV[3]
local origin = ARGV[4]
local credId = ARGV[6]
local expiresAt = tonumber(ARGV[7])
local taskId = ARGV[8]

local fields = redis.call('HGETALL', KEYS[1])
local created = 0
if #fields == 0 then
  created = 1
  fields = { 'o', owner, 'g', origin, 'c', ARGV[1], 'd', ARGV[5], 's', 'active' }
end
local task = {}
for i = 1, #fields, 2 do
  task[fields[i]] = fields[i + 1]
end
local deadline = tonumber(task['d'])

if task['s'] ~= 'active' or now >= deadline then
  return { -1, created, fields }
end
if created == 0 and task['o'] ~= owner and not (task['g'] == 'attestor' and origin == 'attestor') then
  return { -2, created, fields }
end
if expiresAt > deadline then
  return { -3, created, fields }
end

if created == 1 then
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('ZADD', KEYS[7], 'LT', deadline, indexAdd(KEYS[6], ARGV[10], KEYS[7]))
end
-- Members whose records have been dropped (expiry + retention passed) are trimmed as we go. This runs only on
-- an active task: an ended task's zset never changes again, so a fan-out's index cursor into it stays valid.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - retention)

-- A task's only credential is kept in the task hash: k its id, x its expiresAt and, since this layout, its record
-- under these names (credential hash field -> task hash field; none is a task field). Brokers before wrote k and
-- x only, the record in its own hash: such a task has no y.
local INLINE = { y = 'y', s = 'n', a = 'a', u = 'u', i = 'i', e = 'x', k = 'j', l = 'l', v = 'v', w = 'w' }
local INLINE_FIELDS = { 'k', 'x', 'y', 'n', 'a', 'u', 'i', 'j', 'l', 'v', 'w' }
local inline = task['k']
if inline and tonumber(task['x']) <= now - retention then
  redis.call('HDEL', KEYS[1], unpack(INLINE_FIELDS))
  inline = nil
end

-- Key TTLs are absolute and taken against the server's own time, so that they are never in the past
-- (the broker's clock may be skewed, or fake in tests). A TTL is only ever extended.
local floor = tonumber(redis.call('TIME')[1]) + retention
local function expireAt(key, at)
  if at < floor then
    at = floor
  end
  if redis.call('EXPIRETIME', key) < at then
    redis.call('EXPIREAT', key, at)
  end
end

-- A recorded credential is never rewritten: a retry is idempotent and cannot undo a revocation.
if inline ~= credId and redis.call('EXISTS', KEYS[3]) == 0 then
  if not inline and redis.call('EXISTS', KEYS[2]) == 0 then
    -- the task's only credential: its record in the task hash rather than a key of its own (the SPIFFE ID only
    -- when it is not the task owner's)
    local record = { 'k', credId }
    for i = 12, #ARGV, 2 do
      record[#record + 1] = INLINE[ARGV[i]]
      record[#record + 1] = ARGV[i + 1]
    end
    if ARGV[11] ~= task['o'] then
      record[#record + 1] = 'n'
      record[#record + 1] = ARGV[11]
    end
    redis.call('HSET', KEYS[1], unpack(record))
  else
    if inline then
      -- a second credential joins: the first moves to the zset, and its record (when held here) to its own hash
      if task['y'] then
        local moved = {}
        for name, field in pairs(INLINE) do
          if task[field] then
            moved[#moved + 1] = name
            moved[#moved + 1] = task[field]
          end
        end
        local movedKey = string.sub(KEYS[1], 1, -5) .. 'cred:' .. inline
        redis.call('HSET', movedKey, unpack(moved))
        expireAt(movedKey, tonumber(task['x']) + retention)
      end
      redis.call('ZADD', KEYS[2], task['x'], inline)
      redis.call('HDEL', KEYS[1], unpack(INLINE_FIELDS))
    end
    redis.call('HSET', KEYS[3], unpack(ARGV, 12))
    -- The task owner's SPIFFE ID is not stored twice (the task hash outlives the credential hash).
    if ARGV[11] ~= task['o'] then
      redis.call('HSET', KEYS[3], 's', ARGV[11])
    end
    redis.call('ZADD', KEYS[2], expiresAt, credId)
  end
  redis.call('HSET', KEYS[4], credId, taskId)
  indexAdd(KEYS[5], ARGV[9])
end

local taskEnd = deadline
if expiresAt > taskEnd then
  taskEnd = expiresAt
end
expireAt(KEYS[3], expiresAt + retention)
expireAt(KEYS[1], taskEnd + retention)
expireAt(KEYS[2], taskEnd + retention)
return { 1, created, fields }
