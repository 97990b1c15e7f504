-- Sets fields of a hash only if it exists (an update never creates a record).
-- KEYS[1] the hash; ARGV field, value pairs. Returns 1 when written, 0 when absent.

if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV)) return 1
