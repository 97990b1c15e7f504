-- Stores a new token if its identity has Token Auth.
-- KEYS[1] configuration, KEYS[2] token hash, KEYS[3] the identity's token list;
-- ARGV[1] created-at score, ARGV[2] token id, ARGV[3..] field, value pairs.
-- Returns 1 when stored, 0 without a configuration.

if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2]) return 1
