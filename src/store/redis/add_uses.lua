-- tokengate: write uses of an unlimited token that a gateway's near cache
-- counted in memory. Never creates a record: a token deleted meanwhile stays
-- deleted.
-- KEYS[1] the identity's tokens   tg:{IID}:t
-- ARGV[1] the token id (16 bytes)
-- ARGV[2] uses to add
-- ARGV[3] last used at, milliseconds since the epoch (kept if older)
-- Returns 1 when written, 0 when the token is gone.

local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec or #rec < 88 then return 0 end
local last, uses = struct.unpack('>I8I8', rec, 51)
local at = tonumber(ARGV[3])
if last > at then at = last end
redis.call('HSET', KEYS[1], ARGV[1],
  string.sub(rec, 1, 50) .. struct.pack('>I8I8', at, uses + tonumber(ARGV[2])) .. string.sub(rec, 67))
return 1
