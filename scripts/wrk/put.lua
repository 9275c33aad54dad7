-- PUT a 64-byte value (VALUE_BYTES) to a random key among KEYS (200 or 201
-- expected); KEY_PREFIX replaces "key-".
local keys = tonumber(os.getenv("KEYS") or "10000")
local prefix = os.getenv("KEY_PREFIX") or "key-"
local value = string.rep("v", tonumber(os.getenv("VALUE_BYTES") or "64"))
function init(args) math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16)) end
function request() return wrk.format("PUT", "/keys/" .. prefix .. math.random(0, keys - 1), nil, value) end
