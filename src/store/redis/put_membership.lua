-- Writes a membership if its identity exists, and answers the identity's org
-- from the same read, so the per-org project index is fed consistently.
-- KEYS[1] identity hash, KEYS[2] membership hash, KEYS[3] identity's projects;
-- ARGV[1] JSON, ARGV[2] grants, ARGV[3] project. Returns {written, org}.

if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
redis.call('HSET', KEYS[2], 'j', ARGV[1], 'g', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
return {1, redis.call('HGET', KEYS[1], 'o') or ''}
