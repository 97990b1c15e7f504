-- Writes a membership if its identity exists, and answers the identity's org
-- from the same read, so the per-org project index is fed consistently, and
-- whether the membership existed before (a new one is re-checked against the
-- project's owner after the write; see RedisStore::put_membership).
-- KEYS[1] identity hash, KEYS[2] membership hash, KEYS[3] identity's projects;
-- ARGV[1] JSON, ARGV[2] grants, ARGV[3] project. Returns {written, org, existed}.

if redis.call('EXISTS', KEYS[1]) == 0 then return {0, '', 0} end
local existed = redis.call('EXISTS', KEYS[2])
redis.call('HSET', KEYS[2], 'j', ARGV[1], 'g', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
return {1, redis.call('HGET', KEYS[1], 'o') or '', existed}
