-- 90% GET / 10% PUT over KEYS preloaded keys.
local keys = tonumber(os.getenv("KEYS") or "10000")
local value = string.rep("v", 64)
function init(args) math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16)) end
function request()
  local path = "/keys/key-" .. math.random(0, keys - 1)
  if math.random(1, 10) == 1 then return wrk.format("PUT", path, nil, value) end
  return wrk.format("GET", path)
end
