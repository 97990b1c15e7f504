-- Undoes a refused owner change: puts the previous owner back (or none), but
-- only if the owner is still the one this change set, so a later change is
-- never overwritten. KEYS[1] the project's owner key; ARGV[1] the owner that
-- was set, ARGV[2] the previous owner ('' for none). Returns 1 if restored.

if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
