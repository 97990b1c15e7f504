-- Removes a hash field only if it still holds the given value.
-- KEYS[1] the hash; ARGV[1] the field, ARGV[2] the value. Returns 1 or 0.

if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
