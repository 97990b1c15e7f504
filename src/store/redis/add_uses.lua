-- tokengate: write uses of an unlimited token that a gateway's near cache
-- counted in memory. Never creates a record: a token deleted meanwhile stays
-- deleted.
-- KEYS[1] token hash      tg:{IID}:t:TID
-- ARGV[1] uses to add
-- ARGV[2] last used at, milliseconds since the epoch (kept if older)
-- Returns 1 when written, 0 when the token is gone.

if redis.call('HEXISTS', KEYS[1], 'h') == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'u', ARGV[1])
local last = tonumber(redis.call('HGET', KEYS[1], 'l') or '0')
if tonumber(ARGV[2]) > last then redis.call('HSET', KEYS[1], 'l', ARGV[2]) end
return 1
