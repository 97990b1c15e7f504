-- tokengate: change one token's record in place (record.rs has the layout).
-- KEYS[1] the identity's tokens   tg:{IID}:t
-- ARGV[1] the token id (16 bytes)
-- ARGV[2] what: "revoke", "renew" (ARGV[3]: renewed at, ms) or "name"
--         (ARGV[3]: the new name)
-- Returns 1 when written, 0 when the token does not exist.

local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec or #rec < 88 then return 0 end
if ARGV[2] == 'revoke' then
  local flags = string.byte(rec, 34)
  if flags % 2 == 0 then flags = flags + 1 end
  rec = string.sub(rec, 1, 33) .. string.char(flags) .. string.sub(rec, 35)
elseif ARGV[2] == 'renew' then
  rec = string.sub(rec, 1, 42) .. struct.pack('>I8', tonumber(ARGV[3])) .. string.sub(rec, 51)
elseif ARGV[2] == 'name' then
  local entries = struct.unpack('>I2', rec, 87)
  rec = string.sub(rec, 1, 88 + entries * 18) .. ARGV[3]
else
  return redis.error_reply('unknown token update ' .. ARGV[2])
end
redis.call('HSET', KEYS[1], ARGV[1], rec)
return 1
