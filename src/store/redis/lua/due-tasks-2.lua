--[[
  The active tasks whose deadline has passed, from the task index (bucket-index.lua) and its due directory, which
  scores each bucket with a lower bound of the earliest deadline of its active tasks. Each due bucket is read whole
  (its tasks' status and deadline from their hashes) and its score made exact: the earliest deadline of its tasks
  still active (overdue ones included, until they are ended), or it leaves the due directory when none is.

  Input:
    KEYS[1] due directory         <prefix>tasks:due     (zset: bucket name -> earliest active deadline, or lower)
    KEYS[2] task index directory  <prefix>ix:tasks      (buckets <prefix>ix:tasks:<name>, members <createdAt>|<task>)

    ARGV[1] now, epoch seconds
    ARGV[2] limit (>= 1): at most this many buckets, and no new bucket once `limit` overdue tasks were found, or
            once 16 x limit tasks have been read and one of them was overdue (a bound on the script's time: ~8,000
            task hashes, a few ms, at the deadlines job's limit of 500). Overdue tasks scattered one per bucket
            (entries with different task deadlines) are found at up to ~16 x limit / 120 buckets a run; a bucket
            that was due only by a stale score is made exact and passed over (so an empty answer means none is
            overdue, unless `limit` buckets were all due by stale scores)
    ARGV[3] the task hash names' start, <prefix>{t:   (a task hash is <ARGV[3]><task>}:task)

  Output: overdue tasks as task id, deadline pairs, in no particular order (maybe more than the limit).
]]
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])

local overdue = {}
local read = 0
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)) do
  if #overdue >= 2 * limit or (read >= 16 * limit and #overdue > 0) then
    break
  end
  local earliest
  for _, member in ipairs(redis.call('ZRANGE', KEYS[2] .. ':' .. name, 0, -1)) do
    read = read + 1
    local id = string.sub(member, 12)
    local task = redis.call('HMGET', ARGV[3] .. id .. '}:task', 's', 'd')
    if task[1] == 'active' then
      local deadline = tonumber(task[2])
      if deadline <= now then
        overdue[#overdue + 1] = id
        overdue[#overdue + 1] = task[2]
      end
      if not earliest or deadline < earliest then
        earliest = deadline
      end
    end
  end
  if earliest then
    redis.call('ZADD', KEYS[1], 'XX', earliest, name)
  else
    redis.call('ZREM', KEYS[1], name)
  end
end
return overdue
