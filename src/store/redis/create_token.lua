-- Stores a new token if its identity has Token Auth.
-- KEYS[1] configuration, KEYS[2] the identity's tokens (tg:{IID}:t);
-- ARGV[1] token id (16 bytes), ARGV[2] its record (record.rs).
-- Returns 1 when stored, 0 without a configuration.

if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) return 1
