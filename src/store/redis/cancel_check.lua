-- tokengate: a check whose answer the gateway never got (it answered its
-- client 503): give its use back, and make sure a copy of it that reaches
-- Redis even later counts nothing (check_and_consume.lua reads the 'x').
--
-- KEYS[1] the check's remembered answer   tg:rq{IID}:NONCE
-- KEYS[2] the identity's tokens           tg:{IID}:t
-- ARGV[1] the token id (16 bytes)
-- ARGV[2] how long the cancellation is remembered, milliseconds
-- Returns 1 when a counted use was given back, else 0. A rate-limit step
-- the check took is not given back.

local seen = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], 'x', 'PX', ARGV[2])
-- 'c': the script counted the use itself ('f': the gateway was to count it).
if not seen or string.sub(seen, 1, 1) ~= 'c' then return 0 end
local rec = redis.call('HGET', KEYS[2], ARGV[1])
if not rec or #rec < 88 then return 0 end
local uses = struct.unpack('>I8', rec, 59)
if uses == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1],
  string.sub(rec, 1, 58) .. struct.pack('>I8', uses - 1) .. string.sub(rec, 67))
return 1
