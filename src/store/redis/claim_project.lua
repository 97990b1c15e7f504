-- Claims a project for an organization unless another already owns it, and
-- answers the owner either way: the check and the claim are one step, so of
-- two organizations racing for a new project exactly one is answered its own.
-- KEYS[1] the project's owner key; ARGV[1] the claiming organization.

local owner = redis.call('GET', KEYS[1])
if owner then return owner end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
