-- PUT a 64-byte value to a random key among KEYS (200 or 201 expected).
local keys = tonumber(os.getenv("KEYS") or "10000")
local value = string.rep("v", 64)
function init(args) math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16)) end
function request() return wrk.format("PUT", "/keys/key-" .. math.random(0, keys - 1), nil, value) end
