--[[
  Reads a bucketed lexicographic index (bucket-index.lua) in order: up to `count` members strictly after a bound.

  Input:
    KEYS[1] the index's directory (its buckets are <KEYS[1]>:<name>)

    ARGV[1] desc | asc
    ARGV[2] the bound, a member (exclusive); empty: from the end (desc: the greatest member, asc: the least)
    ARGV[3] count (>= 1)

  Output: the members, in that order.
]]
local dir = KEYS[1]
local desc = ARGV[1] == 'desc'
local bound = ARGV[2]
local count = tonumber(ARGV[3])

local out = {}
local name
if desc then
  -- members below the bound live in buckets named below it
  if bound == '' then
    name = redis.call('ZREVRANGE', dir, 0, 0)[1]
  else
    name = redis.call('ZREVRANGEBYLEX', dir, '(' .. bound, '-', 'LIMIT', 0, 1)[1]
  end
  local from = bound == '' and '+' or '(' .. bound
  while name and #out < count do
    for _, m in ipairs(redis.call('ZREVRANGEBYLEX', dir .. ':' .. name, from, '-', 'LIMIT', 0, count - #out)) do
      out[#out + 1] = m
    end
    name = redis.call('ZREVRANGEBYLEX', dir, '(' .. name, '-', 'LIMIT', 0, 1)[1]
  end
else
  -- from the bucket that would hold the bound (the lowest when it is below every name)
  if bound ~= '' then
    name = redis.call('ZREVRANGEBYLEX', dir, '[' .. bound, '-', 'LIMIT', 0, 1)[1]
  end
  if not name then
    name = redis.call('ZRANGE', dir, 0, 0)[1]
  end
  local from = bound == '' and '-' or '(' .. bound
  while name and #out < count do
    for _, m in ipairs(redis.call('ZRANGEBYLEX', dir .. ':' .. name, from, '+', 'LIMIT', 0, count - #out)) do
      out[#out + 1] = m
    end
    name = redis.call('ZRANGEBYLEX', dir, '(' .. name, '+', 'LIMIT', 0, 1)[1]
  end
end
return out
