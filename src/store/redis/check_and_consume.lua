-- tokengate: check an access token and count its use, atomically.
-- The Redis twin of auth::decide (src/auth.rs); tests/store_contract.rs holds
-- both to the same answers. One call per authenticated request.
--
-- KEYS[1] the identity's tokens   tg:{IID}:t (token id -> record, record.rs)
-- KEYS[2] identity hash           tg:{IID}:i
-- KEYS[3] membership hash         tg:{IID}:m:PROJECT (ignored unless ARGV[4] == "1")
-- KEYS[4] rate-limit bucket of the identity's own limit, per identity   tg:rl{IID}:i
-- KEYS[5] the same, per token                                         tg:rl{IID}:t:TID
-- KEYS[6] the bucket of the route's default limit (ARGV[8]); unused without one
-- KEYS[7] this check's remembered answer   tg:rq{IID}:NONCE (keys.rs)
-- ARGV[1] SHA-256 of the presented secret (32 bytes)
-- ARGV[2] client IP: family byte (4 or 6) + 16 address bytes
-- ARGV[3] now, milliseconds since the epoch, or '' for Redis's own clock
-- ARGV[4] "1" when the request names a project
-- ARGV[5] the org roles the request needs (comma-separated, any one), or "" for any
-- ARGV[6] "1" when the gateway keeps the records in its near cache
-- ARGV[7] the token id (16 bytes)
-- ARGV[8] the route's default rate limit ("requests,window,burst,i|t") or ""
-- ARGV[9] the project roles the request needs (comma-separated, any one), or ""
-- ARGV[10] how long an allowed answer is remembered under KEYS[7], milliseconds
-- Returns {0, identity name, org role, project roles} when allowed (and counted),
-- followed, when ARGV[6] == "1" and the token has no use limit, by its
-- record, the membership's grants ('' without a project) and this Redis
-- process's run_id (the gateway keeps only what a node it listens to
-- answered), so the gateway can decide the token's next requests itself
-- (never for an identity with a rate limit of its own: those are decided
-- here, every time). That use is not counted here:
-- the gateway counts it with those it decides itself and writes them in
-- batches (a write here would invalidate the very copy it is about to keep);
-- else {DENY.<reason>, ""}, and for DENY.rate_limited {code, "", ms to
-- wait, the limit that applied}. DENY is not defined here: the gateway prepends it
-- from the one table of deny codes (src/store/redis/scripts.rs), which is also
-- how it reads the answer back.
--
-- The gateway sends a check again when its reply is lost (a dropped
-- connection, a timeout: the script may have run). An allowed answer is
-- therefore remembered under the request's own nonce and given again
-- instead of counting a second use; a refusal writes nothing, so deciding
-- it again is harmless. When the gateway gives up, cancel_check.lua gives
-- the use back and leaves 'x' here, so a copy of this check that reaches
-- Redis even later counts nothing.

local seen = redis.call('GET', KEYS[7])
if seen then
  if seen == 'x' then return redis.error_reply('tokengate: check cancelled') end
  local rest = string.sub(seen, 2)
  if string.sub(seen, 1, 1) == 'f' then return cmsgpack.unpack(rest) end
  local a = string.find(rest, '\0', 1, true)
  local b = string.find(rest, '\0', a + 1, true)
  return {0, string.sub(rest, 1, a - 1), string.sub(rest, a + 1, b - 1), string.sub(rest, b + 1)}
end
-- 'c' (the use was counted here): name, org role and project roles, NUL
-- between them (neither names nor roles hold control characters), cheaper
-- than a general encoding on the path every counted request takes; 'f'
-- (the cache's fill, the use left to the gateway): the whole answer.
local function remember(kind, answer)
  local v
  if kind == 'c' then
    v = 'c' .. answer[2] .. '\0' .. answer[3] .. '\0' .. answer[4]
  else
    v = 'f' .. cmsgpack.pack(answer)
  end
  redis.call('SET', KEYS[7], v, 'PX', ARGV[10])
  return answer
end

local rec = redis.call('HGET', KEYS[1], ARGV[7])
if not rec or #rec < 88 or string.byte(rec, 1) ~= 1 then return {DENY.unknown_token, ''} end
if string.sub(rec, 2, 33) ~= ARGV[1] then return {DENY.unknown_token, ''} end
local ident = redis.call('HMGET', KEYS[2], 'n', 'r', 'l')
if not ident[1] then return {DENY.unknown_token, ''} end
if string.byte(rec, 34) % 2 == 1 then return {DENY.revoked, ''} end

local created, renewed, _, uses, limit, ttl, maxttl, period, entries =
  struct.unpack('>I8I8I8I8I8I4I4I4I2', rec, 35)
-- Redis's clock, so every gateway decides alike (effects replication, the
-- default since Redis 5, lets a script write after reading TIME).
local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[3])
end
local base = created
if renewed > 0 then base = renewed end
if period > 0 then
  if now >= base + period * 1000 then return {DENY.expired, ''} end
else
  local cap = nil
  if maxttl > 0 then cap = created + maxttl * 1000 end
  if ttl > 0 and now >= base + ttl * 1000 and (cap == nil or base + ttl * 1000 < cap) then
    return {DENY.expired, ''}
  end
  if cap ~= nil and now >= cap then return {DENY.max_ttl, ''} end
end

-- Trusted IPs: flag 2 of byte 34 means nowhere (an empty list); else no
-- entries means anywhere, and 18-byte entries from byte 89 are family (1),
-- address (16), prefix length (1). Families must match.
if math.floor(string.byte(rec, 34) / 2) % 2 == 1 then return {DENY.ip_not_trusted, ''} end
if entries > 0 then
  local client = ARGV[2]
  local fam = string.byte(client, 1)
  local ok = false
  for off = 89, 88 + entries * 18, 18 do
    if string.byte(rec, off) == fam then
      local plen = string.byte(rec, off + 17)
      local whole = math.floor(plen / 8)
      if string.sub(rec, off + 1, off + whole) == string.sub(client, 2, 1 + whole) then
        local rest = plen % 8
        if rest == 0 then ok = true break end
        local div = 2 ^ (8 - rest)
        if math.floor(string.byte(rec, off + 1 + whole) / div) == math.floor(string.byte(client, 2 + whole) / div) then
          ok = true break
        end
      end
    end
  end
  if not ok then return {DENY.ip_not_trusted, ''} end
end

if limit > 0 and uses >= limit then return {DENY.usage_limit, ''} end
-- Is one of the comma-separated `wanted` among the comma-separated `held`?
local function any_role(wanted, held)
  for w in string.gmatch(wanted, '[^,]+') do
    for h in string.gmatch(held, '[^,]+') do
      if w == h then return true end
    end
  end
  return false
end
if ARGV[5] ~= '' and not any_role(ARGV[5], ident[2]) then return {DENY.org_role, ''} end

-- Project membership: grants are lines "start,end,role" (0,0 = permanent);
-- active roles are joined with commas, no-access gives nothing.
local roles, grants = '', false
if ARGV[4] == '1' then
  grants = redis.call('HGET', KEYS[3], 'g')
  if grants then
    for s, e, role in string.gmatch(grants, '(%d+),(%d+),([^\n]*)\n') do
      s, e = tonumber(s), tonumber(e)
      local active = (s == 0 and e == 0) or (now >= s and now < e)
      if active and role ~= 'no-access' then
        if roles ~= '' then roles = roles .. ',' end
        roles = roles .. role
      end
    end
  end
  if roles == '' then return {DENY.no_project_access, ''} end
end
if ARGV[9] ~= '' and not any_role(ARGV[9], roles) then return {DENY.project_role, ''} end

-- Rate limit, last: GCRA as in src/rate_limit.rs, in microseconds (every
-- value stays below 2^53, where Lua numbers are exact). The identity's own
-- limit (field l of its hash) wins over the route's default. A refusal
-- writes nothing: no use, no step of the bucket.
local own = ident[3]
if own == '' then own = false end
local policy, bucket = own, nil
if not own and ARGV[8] ~= '' then policy, bucket = ARGV[8], KEYS[6] end
local tat_next, tat_ttl = nil, nil
if policy then
  local req, win, burst, per = string.match(policy, '^(%d+),(%d+),(%d+),([it])$')
  if not req then return redis.error_reply('tokengate: bad rate limit ' .. policy) end
  if not bucket then
    if per == 'i' then bucket = KEYS[4] else bucket = KEYS[5] end
  end
  local interval = math.ceil(tonumber(win) * 1000000 / tonumber(req))
  local tolerance = tonumber(burst) * interval
  local now_us = now * 1000
  local tat = tonumber(redis.call('GET', bucket) or '0') or 0
  if tat < now_us then tat = now_us end
  local ahead = tat + interval - now_us
  if ahead > tolerance then
    return {DENY.rate_limited, '', math.ceil((ahead - tolerance) / 1000), policy}
  end
  tat_next, tat_ttl = tat + interval, math.ceil(ahead / 1000)
end
local function step()
  if tat_next then
    redis.call('SET', bucket, string.format('%.0f', tat_next), 'PX', tat_ttl)
  end
end

-- Counting a use rewrites last used at and uses (bytes 51-66).
local function count()
  redis.call('HSET', KEYS[1], ARGV[7],
    string.sub(rec, 1, 50) .. struct.pack('>I8I8', now, uses + 1) .. string.sub(rec, 67))
end
step()
if ARGV[6] == '1' and limit == 0 and not own then
  local node = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or ''
  return remember('f', {0, ident[1], ident[2], roles, rec, grants or '', node})
end
count()
return remember('c', {0, ident[1], ident[2], roles})
