-- GET random preloaded keys, 16 requests pipelined per write (wrk counts
-- each response). Compares how servers handle a client that batches.
local keys = tonumber(os.getenv("KEYS") or "10000")
local depth = tonumber(os.getenv("DEPTH") or "16")
function init(args) math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16)) end
function request()
  local reqs = {}
  for i = 1, depth do
    reqs[i] = wrk.format("GET", "/keys/key-" .. math.random(0, keys - 1))
  end
  return table.concat(reqs)
end
