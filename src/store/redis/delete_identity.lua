-- Deletes an identity with its tokens and memberships unless it has delete
-- protection, checked in the same step. KEYS[1] identity, KEYS[2] configuration,
-- KEYS[3] its tokens, KEYS[4] projects; ARGV[1] the key prefix (same slot).
-- Returns {0 absent | 1 deleted | 2 protected, token ids, projects}.

local protected = redis.call('HGET', KEYS[1], 'p')
if not protected then return {0, {}, {}} end
if protected == '1' then return {2, {}, {}} end
local tids = redis.call('HKEYS', KEYS[3])
local projects = redis.call('SMEMBERS', KEYS[4])
for _, p in ipairs(projects) do redis.call('DEL', ARGV[1] .. 'm:' .. p) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return {1, tids, projects}
