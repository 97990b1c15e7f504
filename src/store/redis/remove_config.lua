-- Removes a Token Auth configuration and revokes every token of the identity.
-- KEYS[1] configuration, KEYS[2] the identity's tokens (tg:{IID}:t; the
-- revoked flag is bit 1 of byte 34 of each record, record.rs), KEYS[3] the
-- identity hash (its field l, the rate limit, goes with the configuration).
-- Returns the removed JSON, or false.

local cfg = redis.call('GET', KEYS[1])
if not cfg then return false end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[3], 'l')
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local rec = all[i + 1]
  local flags = string.byte(rec, 34)
  if flags and flags % 2 == 0 then
    redis.call('HSET', KEYS[2], all[i], string.sub(rec, 1, 33) .. string.char(flags + 1) .. string.sub(rec, 35))
  end
end
return cfg
