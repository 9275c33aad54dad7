-- GET a random preloaded key (key-0 .. key-(KEYS-1); KEY_PREFIX replaces
-- "key-"). wrk itself counts non-2xx answers ("Non-2xx or 3xx responses"),
-- which scripts/load.sh reads.
local keys = tonumber(os.getenv("KEYS") or "10000")
local prefix = os.getenv("KEY_PREFIX") or "key-"
function init(args) math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16)) end
function request() return wrk.format("GET", "/keys/" .. prefix .. math.random(0, keys - 1)) end
