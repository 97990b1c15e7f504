-- Removes a Token Auth configuration and revokes every token of the identity.
-- KEYS[1] configuration, KEYS[2] token list; ARGV[1] the identity's key prefix
-- (keys built from it share the identity's hash tag, so the same slot).
-- Returns the removed JSON, or false.

local cfg = redis.call('GET', KEYS[1])
if not cfg then return false end
redis.call('DEL', KEYS[1])
for _, tid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  redis.call('HSET', ARGV[1] .. 't:' .. tid, 'x', '1')
end
return cfg
