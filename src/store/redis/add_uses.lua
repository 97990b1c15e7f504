-- tokengate: write uses of an identity's unlimited tokens that a gateway's
-- near cache counted in memory, all in one call (one invalidation for the
-- identity rather than one per token). Never creates a record: a token
-- deleted meanwhile stays deleted.
-- KEYS[1] the identity's tokens   tg:{IID}:t
-- ARGV    triples: token id (16 bytes), uses to add, last used at (ms; kept
--         if older than the stored one)
-- Returns how many tokens were written.

local written = 0
for i = 1, #ARGV, 3 do
  local rec = redis.call('HGET', KEYS[1], ARGV[i])
  if rec and #rec >= 88 then
    local last, uses = struct.unpack('>I8I8', rec, 51)
    local at = tonumber(ARGV[i + 2])
    if last > at then at = last end
    redis.call('HSET', KEYS[1], ARGV[i],
      string.sub(rec, 1, 50) .. struct.pack('>I8I8', at, uses + tonumber(ARGV[i + 1])) .. string.sub(rec, 67))
    written = written + 1
  end
end
return written
