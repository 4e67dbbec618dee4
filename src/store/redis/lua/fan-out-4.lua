--[[
  One batch of the fan-out of an ended task: marks up to `batch` of its credentials revoked with the task's
  endedAt and reason, appending one credential event for each, atomically per batch. Credentials already revoked,
  expired (expiresAt <= now) or dropped are skipped. A cursor in the task hash (`p`: an index into the task's
  credential zset, ordered by expiresAt then id, after the task's only credential when the task hash holds it)
  makes a retry after a crash resume where the last batch stopped;
  the zset of an ended task never changes (record-issuance refuses ended tasks and only trims active ones), so
  the index stays valid. When every credential has been visited: `f` = 1 and the task leaves tasks:ending.

  KEYS[1..2] live in the task's hash slot ({t:<task>}); KEYS[3..4] are global keys. The credential hashes are
  reached by name, `<KEYS[1] without "task">cred:<id>`: the same slot as KEYS[1]. The script is atomic on a
  standalone Redis (the supported deployment). Redis Cluster would need the global writes split out of this
  script (made at-least-once through an outbox); that is not supported yet.

  Input:
    KEYS[1] task hash             <prefix>{t:<task>}:task
    KEYS[2] task credential zset  <prefix>{t:<task>}:creds
    KEYS[3] revocation stream     <prefix>revocations
    KEYS[4] tasks ending          <prefix>tasks:ending

    ARGV[1] now, epoch seconds, from the broker's (injectable) clock
    ARGV[2] retention, seconds a record is kept after it has expired
    ARGV[3] task id
    ARGV[4] batch size (>= 1)

  Output: { revoked (credentials revoked by this call), done (1 | 0) }
    An active task: { 0, 0 }. A missing (or dropped) task: { 0, 1 }, and it leaves tasks:ending.
]]
local now = tonumber(ARGV[1])
local retention = tonumber(ARGV[2])
local taskId = ARGV[3]
local batch = tonumber(ARGV[4])

local task = redis.call('HMGET', KEYS[1], 's', 'd', 'e', 'r', 'p', 'f', 'k', 'y', 'x', 'v')
local status, deadline, endedAt, reason, cursor, finished = task[1], task[2], task[3], task[4], task[5], task[6]
-- A task's only credential is kept in the task hash (k) rather than in the zset: it comes first, at index 0. Its
-- record is in the task hash too (y type, x expiresAt, v revokedAt), or, as brokers before wrote it (no y), in
-- its own hash.
local inline, inlineType, inlineExpiresAt, inlineRevokedAt = task[7], task[8], task[9], task[10]
if not status or now >= tonumber(deadline) + retention then
  redis.call('ZREM', KEYS[4], taskId)
  return { 0, 1 }
end
if status == 'active' then
  return { 0, 0 }
end
if finished == '1' then
  redis.call('ZREM', KEYS[4], taskId)
  return { 0, 1 }
end

cursor = tonumber(cursor) or 0
local base = string.sub(KEYS[1], 1, -5) .. 'cred:'
local ids = {}
local offset = 0
if inline then
  offset = 1
  if cursor == 0 then
    ids[1] = inline
  end
end
local from = cursor - offset
if from < 0 then
  from = 0
end
if batch > #ids then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], from, from + batch - #ids - 1)) do
    ids[#ids + 1] = id
  end
end
local revoked = 0
for _, id in ipairs(ids) do
  local key = base .. id
  local c
  if id == inline and inlineType then
    key = KEYS[1]
    c = { inlineType, inlineExpiresAt, inlineRevokedAt }
  else
    c = redis.call('HMGET', key, 'y', 'e', 'v')
  end
  if c[1] and not c[3] and tonumber(c[2]) > now then
    redis.call('HSET', key, 'v', endedAt, 'w', reason)
    redis.call('XADD', KEYS[3], '*', 'k', 'c', 'c', id, 'y', c[1], 't', taskId, 'x', c[2], 'r', reason, 'v', endedAt)
    revoked = revoked + 1
  end
end

cursor = cursor + #ids
if cursor >= redis.call('ZCARD', KEYS[2]) + offset then
  redis.call('HSET', KEYS[1], 'f', '1')
  redis.call('HDEL', KEYS[1], 'p')
  redis.call('ZREM', KEYS[4], taskId)
  return { revoked, 1 }
end
redis.call('HSET', KEYS[1], 'p', cursor)
return { revoked, 0 }
