--[[
  A lexicographic index kept in small buckets (included by the scripts that change one: `-- @include bucket-index.lua`).

  One big zset costs ~150 B per member (skiplist and dict); a zset of up to 128 members of up to 64 bytes is one
  listpack, a few bytes over the member itself (Redis's default zset-max-listpack-entries and -value). So an index is
  a directory and buckets, like the leaves of a B+ tree:
    <dir>             zset, scores 0: the bucket names, each the lowest member its bucket may hold
    <dir>:<name>      zset, scores 0: the members from <name> (included) up to the next bucket's name (excluded)
  A member goes into the bucket with the greatest name <= it; one below every name goes into the lowest bucket,
  renamed after it. A bucket of more than BUCKET_MAX members gives its upper part to a new bucket: its top
  BUCKET_MOVE when the member was added at its top (listing keys mostly arrive in ascending order: the bucket left
  behind stays nearly full), else its upper half. An emptied bucket leaves the directory. Members are never scored:
  readers use ZRANGEBYLEX on the buckets (index-range-1.lua).

  An index may have a due directory beside it (the task index: `tasks:due`), which scores each bucket with a lower
  bound of its earliest active deadline; a renamed bucket keeps its score, a split-off one gets its parent's
  (due-tasks-2.lua makes them exact again).
]]
local BUCKET_MAX = 120
local BUCKET_MOVE = 8

local function indexBucketOf(dir, member)
  return redis.call('ZREVRANGEBYLEX', dir, '[' .. member, '-', 'LIMIT', 0, 1)[1]
end

-- Adds member to the index; returns the name of the bucket that holds it.
local function indexAdd(dir, member, due)
  local name = indexBucketOf(dir, member)
  if not name then
    local lowest = redis.call('ZRANGE', dir, 0, 0)[1]
    if lowest then
      if redis.call('EXISTS', dir .. ':' .. lowest) == 1 then
        redis.call('RENAME', dir .. ':' .. lowest, dir .. ':' .. member)
      end
      redis.call('ZREM', dir, lowest)
      if due then
        local score = redis.call('ZSCORE', due, lowest)
        if score then
          redis.call('ZREM', due, lowest)
          redis.call('ZADD', due, score, member)
        end
      end
    end
    redis.call('ZADD', dir, 0, member)
    name = member
  end
  local bucket = dir .. ':' .. name
  redis.call('ZADD', bucket, 0, member)
  local size = redis.call('ZCARD', bucket)
  if size > BUCKET_MAX then
    local move = math.floor(size / 2)
    if redis.call('ZREVRANGE', bucket, 0, 0)[1] == member then
      move = BUCKET_MOVE
    end
    local moved = redis.call('ZRANGE', bucket, -move, -1)
    local scored = {}
    for _, m in ipairs(moved) do
      scored[#scored + 1] = 0
      scored[#scored + 1] = m
    end
    redis.call('ZADD', dir .. ':' .. moved[1], unpack(scored))
    redis.call('ZREM', bucket, unpack(moved))
    redis.call('ZADD', dir, 0, moved[1])
    if due then
      local score = redis.call('ZSCORE', due, name)
      if score then
        redis.call('ZADD', due, 'LT', score, moved[1])
      end
    end
    -- (no string comparison in Lua: it follows the server's locale, Redis's order is bytewise)
    if redis.call('ZSCORE', bucket, member) == false then
      name = moved[1]
    end
  end
  return name
end

-- Removes member from the index (when there); an emptied bucket leaves the directory (and the due directory).
local function indexRemove(dir, member, due)
  local name = indexBucketOf(dir, member)
  if not name then
    return 0
  end
  local bucket = dir .. ':' .. name
  local removed = redis.call('ZREM', bucket, member)
  if redis.call('EXISTS', bucket) == 0 then
    redis.call('ZREM', dir, name)
    if due then
      redis.call('ZREM', due, name)
    end
  end
  return removed
end
