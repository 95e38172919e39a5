package redis

import goredis "github.com/redis/go-redis/v9"

// The layout is Dapr's, so that a Dapr sidecar and an Outrigger sidecar can share one
// Redis: each key is a hash with the fields "data" (the value's bytes, untouched) and
// "version" (an integer bumped by HINCRBY on every write, which is the ETag).

// Arguments of one operation in writeScript: ARGV holds argsPerOp values per key, in
// KEYS order.
const (
	argKind       = iota // "S" (set) or "D" (delete)
	argETag              // "" or the expected version, canonical decimal
	argFirstWrite        // "1": only write if the key does not exist
	argTTL               // set only: milliseconds; "0" removes any expiry
	argData              // set only: the value
	argsPerOp
)

// writeScriptSrc reads ARGV in strides of 5; this fails to compile if argsPerOp drifts.
var _ = [1]struct{}{}[argsPerOp-5]

// Error replies of writeScript, followed by a space and the 1-based operation index.
const (
	errETagMismatch = "ETAG_MISMATCH"
	errKeyExists    = "FIRST_WRITE_EXISTS"
	errBadVersion   = "BAD_VERSION"
)

// writeScript applies a list of sets and deletes atomically. It checks every operation
// first, against the state earlier operations of the same list would leave, and only
// then writes: a failed check aborts the whole list with nothing applied. (Dapr's
// MULTI of per-operation scripts cannot do that: Redis does not roll back a MULTI when
// one of its scripts errors.) The apply phase only runs commands that cannot fail on
// the keys the check phase has vetted, so it cannot stop half-way.
//
// A key holding something other than a hash (a plain string written by very old Dapr
// versions) is replaced on set, as Dapr's set script does, and never matches an ETag.
const writeScriptSrc = `
local n = #KEYS
local ver, exists, wrong = {}, {}, {}
local function load(k)
  if ver[k] ~= nil then return end
  local v = redis.pcall("HGET", k, "version")
  if type(v) == "table" then
    wrong[k] = true
    v = false
  elseif v and not tonumber(v) then
    return "bad"
  end
  ver[k] = v
  exists[k] = redis.call("EXISTS", k) == 1
end
for i = 1, n do
  local k = KEYS[i]
  local b = (i - 1) * 5
  local kind, etag, fw = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  if load(k) == "bad" then return redis.error_reply("BAD_VERSION " .. i) end
  if etag ~= "" then
    if ver[k] ~= etag then return redis.error_reply("ETAG_MISMATCH " .. i) end
  elseif kind == "S" and fw == "1" and exists[k] then
    return redis.error_reply("FIRST_WRITE_EXISTS " .. i)
  end
  if kind == "S" then
    ver[k] = tostring((tonumber(ver[k]) or 0) + 1)
    exists[k] = true
  else
    ver[k] = false
    exists[k] = false
  end
end
for i = 1, n do
  local k = KEYS[i]
  local b = (i - 1) * 5
  if ARGV[b + 1] == "S" then
    if wrong[k] then
      redis.call("DEL", k)
      wrong[k] = nil
    end
    redis.call("HSET", k, "data", ARGV[b + 5])
    redis.call("HINCRBY", k, "version", 1)
    local ttl = tonumber(ARGV[b + 4])
    if ttl > 0 then
      redis.call("PEXPIRE", k, ttl)
    else
      redis.call("PERSIST", k)
    end
  else
    redis.call("DEL", k)
    wrong[k] = nil
  end
end
return n
`

// getScript reads a key's data, version and remaining time to live in one round trip.
// A plain string value (very old Dapr versions wrote those) is returned with an empty
// version, as Dapr's fallback GET does.
const getScriptSrc = `
local r = redis.pcall("HMGET", KEYS[1], "data", "version")
if type(r) == "table" and r.err then
  local s = redis.pcall("GET", KEYS[1])
  if type(s) ~= "string" then return s end
  return {s, "", redis.call("PTTL", KEYS[1])}
end
return {r[1], r[2], redis.call("PTTL", KEYS[1])}
`

// The scripts run with EVALSHA, falling back to EVAL (which caches them) when the
// server does not know them yet or has flushed its script cache.
var (
	writeScript = goredis.NewScript(writeScriptSrc)
	getScript   = goredis.NewScript(getScriptSrc)
)
