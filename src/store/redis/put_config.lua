-- Attaches (ARGV[1] == "create") or changes a Token Auth configuration.
-- KEYS[1] identity hash, KEYS[2] configuration; ARGV[2] the JSON, ARGV[3]
-- its rate limit as the check script reads it ('' for none), kept in field l
-- of the identity hash, which the check script reads anyway.
-- Create needs the identity and no configuration; update needs a configuration.
-- Returns 1 when written, 0 otherwise.

local has = redis.call('EXISTS', KEYS[2]) == 1
if ARGV[1] == 'create' then
  if has or redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
elseif not has then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], 'l')
else
  redis.call('HSET', KEYS[1], 'l', ARGV[3])
end
return 1
