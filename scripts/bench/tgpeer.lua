-- The hand-built peer of the benchmark (variants G and G2 of scripts/bench.sh):
-- token authentication in nginx with Lua and Redis, written to be as fast as
-- we can make it, so that comparing tokengate with it means something.
--
-- Debian 12 packages the Lua module (libnginx-mod-http-lua) but not
-- lua-resty-redis, so this file carries its own small RESP client over
-- ngx.socket.tcp, with connections kept in nginx's keepalive pool.
--
-- A token record lives in a Redis hash keyed by the SHA-256 of the token
-- (never the token itself, as tokengate does):
--   gp:t:<sha256 hex>  i identity id, n identity name, r org role,
--                      x "1" when revoked, e expiry (ms since epoch, 0 none),
--                      k use limit (0 unlimited), u uses, l last use (ms)
--
-- G:  every request runs one EVALSHA of CHECK, which checks and counts.
-- G2: like Kong's key-auth, the record is cached in a lua_shared_dict; a hit
--     is decided from the cache and its use counted in the dict, flushed to
--     Redis once a second by a timer. A limited token is never decided from
--     the cache: it always spends its use in CHECK, so limits stay exact.

local ffi = require "ffi"

local M = {}

-- SHA-256 from the OpenSSL library nginx is linked with (lua-resty-string,
-- which wraps the same call, is not packaged in Debian 12).
ffi.cdef [[
unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
]]
local digest = ffi.new("unsigned char[32]")
local HEX = {}
for b = 0, 255 do HEX[b] = string.format("%02x", b) end
local hex_out = {}
local function sha256_hex(s)
    ffi.C.SHA256(s, #s, digest)
    for i = 0, 31 do hex_out[i + 1] = HEX[digest[i]] end
    return table.concat(hex_out)
end

-- Checks the token record and counts the use, atomically. KEYS[1] the record,
-- ARGV[1] now (ms). Returns {identity id, name, role, limit} or {"", reason}.
local CHECK = [[
local r = redis.call('HMGET', KEYS[1], 'i', 'n', 'r', 'x', 'e', 'k', 'u')
if not r[1] then return {'', 'unknown token'} end
if r[4] == '1' then return {'', 'token revoked'} end
local now = tonumber(ARGV[1])
local exp = tonumber(r[5] or '0')
if exp > 0 and now >= exp then return {'', 'token expired'} end
local limit, uses = tonumber(r[6] or '0'), tonumber(r[7] or '0')
if limit > 0 and uses >= limit then return {'', 'usage limit reached'} end
redis.call('HINCRBY', KEYS[1], 'u', 1)
redis.call('HSET', KEYS[1], 'l', ARGV[1])
return {r[1], r[2], r[3], tostring(limit)}
]]
-- The script's SHA-1, computed once: EVALSHA sends 40 bytes instead of the
-- script, and SCRIPT LOAD is sent only when Redis answers NOSCRIPT.
local CHECK_SHA
do
    local bin = ngx.sha1_bin(CHECK)
    local hex = {}
    for i = 1, #bin do hex[i] = string.format("%02x", string.byte(bin, i)) end
    CHECK_SHA = table.concat(hex)
end

local REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
function M.configure(host, port)
    REDIS_HOST, REDIS_PORT = host, port
end

-- RESP: encode a command as an array of bulk strings.
local function encode(args)
    local parts = { "*", #args, "\r\n" }
    for _, a in ipairs(args) do
        a = tostring(a)
        parts[#parts + 1] = "$"
        parts[#parts + 1] = #a
        parts[#parts + 1] = "\r\n"
        parts[#parts + 1] = a
        parts[#parts + 1] = "\r\n"
    end
    return table.concat(parts)
end

-- RESP: read one reply. Errors come back as nil, message.
local function read_reply(sock)
    local line, err = sock:receive("*l")
    if not line then return nil, err end
    local kind, rest = string.sub(line, 1, 1), string.sub(line, 2)
    if kind == "+" then return rest end
    if kind == "-" then return nil, rest end
    if kind == ":" then return tonumber(rest) end
    if kind == "$" then
        local n = tonumber(rest)
        if n < 0 then return ngx.null end
        local data, rerr = sock:receive(n + 2)
        if not data then return nil, rerr end
        return string.sub(data, 1, n)
    end
    if kind == "*" then
        local n = tonumber(rest)
        if n < 0 then return ngx.null end
        local items = {}
        for i = 1, n do
            local item, ierr = read_reply(sock)
            if item == nil then return nil, ierr end
            items[i] = item
        end
        return items
    end
    return nil, "bad RESP reply: " .. line
end

local function connect()
    local sock = ngx.socket.tcp()
    sock:settimeout(1000)
    local ok, err = sock:connect(REDIS_HOST, REDIS_PORT)
    if not ok then return nil, err end
    return sock
end

-- Back to the pool: 60 s idle, at most 64 connections per worker.
local function release(sock)
    sock:setkeepalive(60000, 64)
end

-- One command on a pooled connection; a protocol or network failure closes
-- the connection instead of returning it to the pool.
local function command(args)
    local sock, err = connect()
    if not sock then return nil, err end
    local ok, serr = sock:send(encode(args))
    if not ok then sock:close() return nil, serr end
    local res, rerr = read_reply(sock)
    if res == nil and (rerr == "timeout" or rerr == "closed") then
        sock:close()
        return nil, rerr
    end
    release(sock)
    return res, rerr
end

local function check(key, now)
    local res, err = command({ "EVALSHA", CHECK_SHA, 1, key, now })
    if res == nil and err and string.find(err, "NOSCRIPT", 1, true) then
        local _, lerr = command({ "SCRIPT", "LOAD", CHECK })
        if lerr then return nil, lerr end
        res, err = command({ "EVALSHA", CHECK_SHA, 1, key, now })
    end
    return res, err
end

local function deny(status, message)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.say('{"statusCode":', status, ',"message":"', message, '"}')
    return ngx.exit(status)
end

local function bearer()
    local h = ngx.var.http_authorization
    if not h then return nil end
    local token = string.match(h, "^Bearer ([%w_%-]+)$")
    -- The shape of a tokengate token: a malformed one never reaches Redis.
    if not token or #token ~= 96 or string.sub(token, 1, 5) ~= "tgat_" then return nil end
    return token
end

local function inject(id, name, role)
    ngx.req.clear_header("Authorization")
    ngx.req.set_header("X-Tokengate-Identity-Id", id)
    ngx.req.set_header("X-Tokengate-Identity-Name", name)
    ngx.req.set_header("X-Tokengate-Org-Role", role)
end

local function now_ms()
    return string.format("%d", ngx.now() * 1000)
end

-- G: one EVALSHA per request.
function M.access_redis()
    local token = bearer()
    if not token then return deny(401, "missing or malformed token") end
    local res, err = check("gp:t:" .. sha256_hex(token), now_ms())
    if not res then
        ngx.log(ngx.ERR, "redis: ", err)
        return deny(503, "store unavailable")
    end
    if res[1] == "" then return deny(401, res[2]) end
    inject(res[1], res[2], res[3])
end

-- G2: the shared-dict cache (lua_shared_dict tgpeer_cache) and counters
-- (lua_shared_dict tgpeer_uses), entries kept CACHE_TTL seconds.
local CACHE_TTL = 5
function M.access_cached()
    local token = bearer()
    if not token then return deny(401, "missing or malformed token") end
    local key = "gp:t:" .. sha256_hex(token)
    local cache = ngx.shared.tgpeer_cache
    local hit = cache:get(key)
    if hit then
        -- "id\nname\nrole": only unlimited tokens are cached.
        local id, name, role = string.match(hit, "^([^\n]*)\n([^\n]*)\n([^\n]*)$")
        ngx.shared.tgpeer_uses:incr(key, 1, 0)
        return inject(id, name, role)
    end
    local res, err = check(key, now_ms())
    if not res then
        ngx.log(ngx.ERR, "redis: ", err)
        return deny(503, "store unavailable")
    end
    if res[1] == "" then return deny(401, res[2]) end
    if res[4] == "0" then
        cache:set(key, res[1] .. "\n" .. res[2] .. "\n" .. res[3], CACHE_TTL)
    end
    inject(res[1], res[2], res[3])
end

-- G2's flush of the counted uses: one pipelined batch per second.
-- Also runs when the worker stops (premature), so a clean stop loses no count.
local function flush()
    local uses = ngx.shared.tgpeer_uses
    local keys = uses:get_keys(0)
    if #keys == 0 then return end
    local now = now_ms()
    local batch, n = {}, 0
    for _, key in ipairs(keys) do
        local count = uses:get(key)
        if count and count > 0 then
            uses:incr(key, -count)
            batch[#batch + 1] = encode({ "HINCRBY", key, "u", count })
            batch[#batch + 1] = encode({ "HSET", key, "l", now })
            n = n + 2
        end
    end
    if n == 0 then return end
    local sock, err = connect()
    if not sock then
        ngx.log(ngx.ERR, "flush: ", err)
        return
    end
    sock:send(table.concat(batch))
    for _ = 1, n do
        local res, rerr = read_reply(sock)
        if res == nil and (rerr == "timeout" or rerr == "closed") then
            sock:close()
            return
        end
    end
    release(sock)
end

function M.init_worker()
    ngx.timer.every(1, flush)
end

return M
