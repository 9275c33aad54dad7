#!/usr/bin/env bash
# ringcache in front of Redis servers, against the HTTP cache tier people run
# instead: nginx in front of memcached. Bounded in time, 127.0.0.1 only.
#
#   scripts/load_redis.sh            full run: the HTTP comparison, then relocation
#   scripts/load_redis.sh http       the HTTP comparison only
#   scripts/load_redis.sh relocate   relocation throughput only
#   scripts/load_redis.sh --smoke    both, tiny and short (about 30 s); fails
#                                    unless every server answered every
#                                    request 2xx and relocation kept every key
#
# HTTP comparison. Servers, each on its own free port:
#   ringcache-redis    ringcache --redis A --redis B --redis C, three
#                      redis-servers started with --save '' --appendonly no
#   nginx-memcached    nginx (worker_processes auto) in front of three memcached
#                      servers: upstream { hash $uri consistent; server ...;
#                      keepalive 32; }; GET through the stock memcached module
#                      (set $memcached_key $uri; memcached_pass upstream;);
#                      keepalive_requests 1000000, as ringcache does not close
#                      a client connection after 1,000 requests (nginx's
#                      default) and wrk would otherwise reconnect for nginx only
#   ringcache-embedded ringcache --nodes 3 (its own in-process nodes)
# SERVERS selects some of them (default: all three, in this order), and
# RINGCACHE_ARGS adds arguments to the ringcache in front of Redis, e.g.
# RINGCACHE_ARGS='--redis-connections 2'. Several argument sets separated by
# ';' start one ringcache-redis each, all in front of the same three
# redis-servers and labelled ringcache-redis[ARGS] (spaces as _): placement
# depends on membership alone, so they agree on every key, the data is
# preloaded once (through the first), and each round runs them in turn like
# separate servers, so machine noise falls on all of them alike. The pool
# size sweep in docs/redis.md ("Connections per server", which has the exact
# command) runs
#   SERVERS=ringcache-redis SETS=big LOAD_SECONDS=10 \
#   RINGCACHE_ARGS='--redis-connections 1;--redis-connections 2;...' \
#   scripts/load_redis.sh http
# Two data sets, each preloaded into every server before the first round
# (SETS selects some of them; default: hot big):
#   hot   HOT_KEYS (5,000) keys hot-0.. of 64-byte values
#   big   BIG_KEYS (1,000,000) keys big-0.. of BIG_VALUE_BYTES (100) bytes
# Each round runs wrk -t1 -cWRK_CONNS for LOAD_SECONDS against every server
# in turn (the first server rotates from round to round) for GET and for PUT
# of random keys of each set (scripts/wrk/get.lua, put.lua), then
# redis-benchmark -t get,set -P 1 -c 50 against one bare redis-server (no
# HTTP, for scale: what one Redis answers to 50 clients; only when SETS has
# hot). Printed: the median requests/s, p50 and p99 of each over ROUNDS
# rounds, the lowest and highest requests/s and p99 of a round, and each
# median as a ratio to nginx-memcached's of the same kind.
#
# How nginx gets its data. nginx's memcached module only reads, and nginx
# places keys by its own hash of $uri, which ringcache's placement does not
# reproduce. Writing every key into all three memcached servers would make
# every GET hit but hold three copies and leave PUT unmeasurable. Instead
# writes go through nginx's own routing: Debian's libnginx-mod-http-memc
# (the memc module) serves PUT in the same location (set $memc_key $uri;
# memc_pass upstream; inside if ($request_method = PUT)), so a key lands on
# exactly the memcached server nginx's GET will ask, each key is held once
# as in Redis, and PUT is measured through the same upstream block.
#
# Relocation. ringcache with two Redis nodes, RELOCATE_KEYS (200,000) keys
# of 100 bytes with a one-hour TTL PUT through it; then POST /nodes adds a
# third Redis server, and the time from the POST until GET /rebalance says
# "active": false gives keys_moved per second; then DELETE of that node
# moves its keys back, timed the same way. Checked: every key is on exactly
# one server in count (DBSIZE sums to RELOCATE_KEYS), the new server holds
# keys_moved keys with their TTL kept. Baseline: scripts/redistool.py moves
# the same number of keys between two bare redis-servers one at a time
# (SCAN, then DUMP, PTTL, RESTORE, DEL: four round trips per key).
#
# Environment: ROUNDS (3; smoke 1), LOAD_SECONDS (5; smoke 1), WRK_CONNS
# (32), HOT_KEYS (5000; smoke 200), BIG_KEYS (1000000; smoke 2000),
# BIG_VALUE_BYTES (100), BENCH_REQUESTS (100000 per redis-benchmark test;
# smoke 2000), RELOCATE_KEYS (200000; smoke 2000), SERVERS, SETS,
# RINGCACHE_ARGS (see above; relocation's ringcache gets the first set),
# RINGCACHE_BIN (default: the release build, wherever cargo puts it). Logs
# and configs go to $TMPDIR/ringcache-redis-*/ and a server's log is printed
# when it fails to start. Needs wrk, redis-server, redis-benchmark,
# memcached, nginx with the memcached, upstream hash and upstream keepalive
# modules (Debian's has them built in) and the memc module; the missing ones
# are installed from Debian's packages when possible, otherwise the script
# names them and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-full}
case "$mode" in
  full | http | relocate | --smoke) ;;
  *) echo "usage: scripts/load_redis.sh [http|relocate|--smoke]" >&2; exit 2 ;;
esac
smoke=false
[ "$mode" = --smoke ] && smoke=true
if $smoke; then
  ROUNDS=${ROUNDS:-1}; SECS=${LOAD_SECONDS:-1}; HOT_KEYS=${HOT_KEYS:-200}; BIG_KEYS=${BIG_KEYS:-2000}
  BENCH_REQUESTS=${BENCH_REQUESTS:-2000}; RELOCATE_KEYS=${RELOCATE_KEYS:-2000}
else
  ROUNDS=${ROUNDS:-3}; SECS=${LOAD_SECONDS:-5}; HOT_KEYS=${HOT_KEYS:-5000}; BIG_KEYS=${BIG_KEYS:-1000000}
  BENCH_REQUESTS=${BENCH_REQUESTS:-100000}; RELOCATE_KEYS=${RELOCATE_KEYS:-200000}
fi
CONNS=${WRK_CONNS:-32}
HOT_VALUE_BYTES=64
BIG_VALUE_BYTES=${BIG_VALUE_BYTES:-100}
RELOCATE_TTL=3600
SERVERS=${SERVERS:-ringcache-redis nginx-memcached ringcache-embedded}
SETS=${SETS:-hot big}
for s in $SERVERS; do
  case "$s" in
    ringcache-redis | nginx-memcached | ringcache-embedded) ;;
    *) echo "load_redis.sh: SERVERS: unknown server $s" >&2; exit 2 ;;
  esac
done
for s in $SETS; do
  case "$s" in
    hot | big) ;;
    *) echo "load_redis.sh: SETS: unknown data set $s" >&2; exit 2 ;;
  esac
done
# One argument set per ringcache-redis (split on ';', each then on spaces).
IFS=';' read -r -a ringcache_arg_sets <<<"${RINGCACHE_ARGS:-}"
[ ${#ringcache_arg_sets[@]} -gt 0 ] || ringcache_arg_sets=("")
started=$(date +%s)
note() { echo "[$(($(date +%s) - started)) s] $*" >&2; }

# --- tools -------------------------------------------------------------------
. scripts/apt.sh
missing=()
command -v python3 >/dev/null || { echo "load_redis.sh: python3 is required" >&2; exit 1; }
# The interpreter itself, not a version manager's shim (which costs ~0.5 s a call).
py=$(python3 -c 'import sys; print(sys.executable)')
tool="$py scripts/loadtool.py"
rtool="$py scripts/redistool.py"
command -v wrk >/dev/null || missing+=(wrk)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
command -v memcached >/dev/null || missing+=(memcached)
if [ ${#missing[@]} -gt 0 ]; then
  echo "load_redis.sh: installing ${missing[*]} from Debian's packages"
  apt_install "${missing[@]}" || { echo "load_redis.sh: missing and not installable here: ${missing[*]}" >&2; exit 1; }
fi
if ! command -v nginx >/dev/null; then
  echo "load_redis.sh: installing nginx from Debian's packages"
  apt_install nginx-light || apt_install nginx || { echo "load_redis.sh: nginx is missing and could not be installed" >&2; exit 1; }
fi
nginx_v=$(nginx -V 2>&1)
for m in http_memcached_module http_upstream_hash_module http_upstream_keepalive_module; do
  if grep -q -- "--without-$m" <<<"$nginx_v"; then
    echo "load_redis.sh: this nginx was built --without-$m; the comparison needs it" >&2
    exit 1
  fi
done
modules_path=$(grep -o -- '--modules-path=[^ ]*' <<<"$nginx_v" | cut -d= -f2)
memc_so=${modules_path:-/usr/lib/nginx/modules}/ngx_http_memc_module.so
if [ ! -e "$memc_so" ]; then
  echo "load_redis.sh: installing the nginx memc module (libnginx-mod-http-memc) for PUT"
  apt_install libnginx-mod-http-memc || true
  [ -e "$memc_so" ] || { echo "load_redis.sh: $memc_so is missing (Debian package libnginx-mod-http-memc)" >&2; exit 1; }
fi
echo "$(head -1 <<<"$nginx_v"): memcached, upstream hash and upstream keepalive modules built in (nginx -V names no --without-...); memc module for PUT: $memc_so"

# --- ringcache ---------------------------------------------------------------
if [ -z "${RINGCACHE_BIN:-}" ]; then
  cargo build --release --bin ringcache >&2
  target_dir=$(cargo metadata --format-version 1 --no-deps |
    "$py" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  RINGCACHE_BIN=$target_dir/release/ringcache
fi
has_redis=true
if ! "$RINGCACHE_BIN" --help | grep -q -- '--redis '; then
  has_redis=false
  echo "load_redis.sh: $RINGCACHE_BIN has no --redis flag: the ringcache-redis runs and relocation are skipped, and the script will exit 1" >&2
fi

logs=$(mktemp -d "${TMPDIR:-/tmp}/ringcache-redis-XXXXXX")
chmod 755 "$logs" # nginx workers run as another user when started as root
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
show_log() { echo "load_redis.sh: $1 did not start; its log:" >&2; cat "$2" >&2 || true; exit 1; }

# Each start_* runs a server in the background and sets $port. (Not a $(...)
# substitution: the server would keep the pipe open and the substitution hang.)
start_redis() {
  port=$($tool free-port)
  mkdir -p "$logs/redis-$port"
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
    --dir "$logs/redis-$port" --logfile "$logs/redis-$port.log" &
  pids+=($!)
  $rtool wait-tcp "127.0.0.1:$port" || show_log "redis-server on $port" "$logs/redis-$port.log"
}
start_memcached() {
  port=$($tool free-port)
  local user=()
  [ "$(id -u)" = 0 ] && user=(-u root)
  memcached -l 127.0.0.1 -p "$port" -U 0 -m 512 -c 4096 "${user[@]}" 2>"$logs/memcached-$port.log" &
  pids+=($!)
  $rtool wait-tcp "127.0.0.1:$port" || show_log "memcached on $port" "$logs/memcached-$port.log"
}
start_ringcache() {
  port=$($tool free-port)
  local log="$logs/ringcache-$port.log"
  RUST_LOG=warn "$RINGCACHE_BIN" --listen "127.0.0.1:$port" "$@" >/dev/null 2>"$log" &
  pids+=($!)
  $tool wait "127.0.0.1:$port" || show_log "ringcache $*" "$log"
}
start_nginx() { # memcached ports...
  port=$($tool free-port)
  local dir="$logs/nginx-$port" servers=""
  mkdir -p "$dir"
  for p in "$@"; do servers+="    server 127.0.0.1:$p;"$'\n'; done
  cat >"$dir/nginx.conf" <<CONF
load_module $memc_so;
worker_processes auto;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  upstream memcached_tier {
    hash \$uri consistent;
$servers    keepalive 32;
  }
  server {
    listen 127.0.0.1:$port;
    location /keys/ {
      set \$memcached_key \$uri;
      memcached_pass memcached_tier;
      if (\$request_method = PUT) {
        set \$memc_key \$uri;
        memc_pass memcached_tier;
      }
    }
  }
}
CONF
  nginx -t -q -p "$dir" -c "$dir/nginx.conf" 2>"$dir/error.log" || show_log "nginx (config test)" "$dir/error.log"
  nginx -p "$dir" -c "$dir/nginx.conf" 2>>"$dir/error.log" &
  pids+=($!)
  $rtool wait-tcp "127.0.0.1:$port" || show_log "nginx" "$dir/error.log"
}
stop_all() { cleanup; for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; pids=(); }

# Runs wrk; prints "rps p50 p99 non2xx errors" (latencies in µs).
run_wrk() { # port script keys prefix value_bytes
  local out
  out=$(KEYS=$3 KEY_PREFIX=$4 VALUE_BYTES=$5 wrk -t1 -c"$CONNS" -d"${SECS}s" --latency \
    -s "scripts/wrk/$2" "http://127.0.0.1:$1" 2>&1)
  echo "$out" >>"$logs/wrk.log"
  local rps p50 p99 non2xx errors
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx or 3xx responses/ {print $NF}' <<<"$out")
  errors=$(awk '/Socket errors/ {gsub(",",""); print $4+$6+$8+$10}' <<<"$out")
  echo "${rps:-0} $(to_us "${p50:-0us}") $(to_us "${p99:-0us}") ${non2xx:-0} ${errors:-0}"
}
to_us() { awk -v x="$1" 'BEGIN {
  n = x + 0; u = x; sub(/^[0-9.]+/, "", u)
  printf "%d\n", n * (u == "ms" ? 1000 : u == "s" ? 1000000 : 1) }'; }

failures=()

# --- HTTP comparison -----------------------------------------------------------
http_comparison() {
  declare -A port_of
  labels=()
  local preload_labels=() server
  for server in $SERVERS; do
    case "$server" in
      ringcache-redis)
        $has_redis || continue
        local redis_flags=() args label i=0
        for _ in 1 2 3; do start_redis; redis_flags+=(--redis "127.0.0.1:$port"); done
        for args in "${ringcache_arg_sets[@]}"; do
          local argv=()
          read -r -a argv <<<"$args"
          start_ringcache "${redis_flags[@]}" "${argv[@]}"
          label=ringcache-redis
          if [ ${#ringcache_arg_sets[@]} -gt 1 ] || [ ${#argv[@]} -gt 0 ]; then
            label="ringcache-redis[$(tr ' ' _ <<<"${argv[*]}")]"
          fi
          port_of[$label]=$port; labels+=("$label")
          # The instances share the three servers: preload through the first.
          [ $((i++)) = 0 ] && preload_labels+=("$label")
        done
        ;;
      nginx-memcached)
        local mc=()
        for _ in 1 2 3; do start_memcached; mc+=("$port"); done
        start_nginx "${mc[@]}"
        port_of[nginx-memcached]=$port; labels+=(nginx-memcached); preload_labels+=(nginx-memcached)
        ;;
      ringcache-embedded)
        start_ringcache --nodes 3
        port_of[ringcache-embedded]=$port; labels+=(ringcache-embedded); preload_labels+=(ringcache-embedded)
        ;;
    esac
  done
  [ ${#labels[@]} -gt 0 ] || { failures+=("no server to measure (SERVERS=$SERVERS)"); return; }
  local bench=false bench_port
  if [[ " $SETS " == *" hot "* ]]; then
    bench=true
    start_redis
    bench_port=$port
  fi

  note "servers up: ${labels[*]}; preloading ${SETS} through ${preload_labels[*]}"
  for label in "${preload_labels[@]}"; do
    for set in $SETS; do
      if [ "$set" = hot ]; then
        $rtool preload "127.0.0.1:${port_of[$label]}" hot- "$HOT_KEYS" "$HOT_VALUE_BYTES"
      else
        $rtool preload "127.0.0.1:${port_of[$label]}" big- "$BIG_KEYS" "$BIG_VALUE_BYTES"
      fi
    done
  done

  local results="$logs/http-results.txt"
  : >"$results"
  note "preloaded; $ROUNDS rounds"
  for round in $(seq "$ROUNDS"); do
    # Rotate which server goes first, so none always runs right after another.
    local order=("${labels[@]:$(((round - 1) % ${#labels[@]}))}" "${labels[@]:0:$(((round - 1) % ${#labels[@]}))}")
    for set in $SETS; do
      local keys=$HOT_KEYS vb=$HOT_VALUE_BYTES
      [ $set = big ] && keys=$BIG_KEYS vb=$BIG_VALUE_BYTES
      for kind in get put; do
        for label in "${order[@]}"; do
          read -r rps p50 p99 non2xx errors < <(run_wrk "${port_of[$label]}" "$kind.lua" "$keys" "$set-" "$vb")
          echo "$set $kind $label $rps $p50 $p99 $non2xx $errors" >>"$results"
          echo "round $round $set $kind $label: $rps req/s, p99 ${p99} µs, non-2xx $non2xx, socket errors $errors" >&2
        done
      done
    done
    $bench || continue
    local csv
    csv=$(redis-benchmark -h 127.0.0.1 -p "$bench_port" -t get,set -P 1 -c 50 -n "$BENCH_REQUESTS" \
      -d "$HOT_VALUE_BYTES" -r "$HOT_KEYS" --csv 2>>"$logs/redis-benchmark.log")
    for t in SET GET; do
      local rps p50 p99
      rps=$(awk -F'"' -v t=$t '$2==t {print $4}' <<<"$csv")
      p50=$(awk -F'"' -v t=$t '$2==t {print $10 * 1000}' <<<"$csv")
      p99=$(awk -F'"' -v t=$t '$2==t {print $14 * 1000}' <<<"$csv")
      echo "hot redis-benchmark-$t redis-benchmark ${rps:-0} ${p50:-0} ${p99:-0} 0 0" >>"$results"
      echo "round $round redis-benchmark $t: ${rps:-0} req/s" >&2
    done
  done
  note "rounds done; stopping the servers"
  stop_all
  note "stopped"

  "$py" - "$results" "$ROUNDS" "$SECS" "$CONNS" "$HOT_KEYS" "$BIG_KEYS" "$BIG_VALUE_BYTES" "$BENCH_REQUESTS" "$SETS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
rounds, secs, conns, hot, big, bigv, bench_n, sets = sys.argv[2:10]
sets = sets.split()
def us(x):
    x = float(x)
    return f"{x / 1000:.2f} ms" if x >= 1000 else f"{x:.0f} µs"
about = []
if "hot" in sets:
    about.append(f"hot = {int(hot):,} keys of 64 B")
if "big" in sets:
    about.append(f"big = {int(big):,} keys of {bigv} B")
if "hot" in sets:
    about.append(f"redis-benchmark -t get,set -P 1 -c 50 -n {bench_n} -d 64 -r {hot}")
print(f"\nwrk -t1 -c{conns} -d{secs}s, {rounds} interleaved rounds, medians; " + "; ".join(about))
print("| data set | kind | server | requests/s | (per round) | p50 | p99 | (per round) | vs nginx-memcached | non-2xx | socket errors |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
groups = {}
for s, kind, label, rps, p50, p99, non2xx, errors in rows:
    g = groups.setdefault((s, kind), {}).setdefault(label, {"rps": [], "p50": [], "p99": [], "non2xx": 0, "errors": 0})
    g["rps"].append(float(rps)); g["p50"].append(float(p50)); g["p99"].append(float(p99))
    g["non2xx"] += int(non2xx); g["errors"] += int(errors)
for (s, kind), labels in groups.items():
    base = labels.get("nginx-memcached")
    base_rps = statistics.median(base["rps"]) if base else None
    for label, g in labels.items():
        m = statistics.median(g["rps"])
        ratio = f"{m / base_rps:.2f}" if base_rps and not kind.startswith("redis-benchmark") else "-"
        name = kind.replace("redis-benchmark-", "") + (" (no HTTP)" if kind.startswith("redis-benchmark") else "")
        spread = f"{min(g['rps']) / 1000:.1f}k–{max(g['rps']) / 1000:.1f}k"
        p99_spread = f"{us(min(g['p99']))}–{us(max(g['p99']))}"
        print(f"| {s} | {name} | {label} | {m:,.0f} | {spread} | {us(statistics.median(g['p50']))} |"
              f" {us(statistics.median(g['p99']))} | {p99_spread} | {ratio} | {g['non2xx']} | {g['errors']} |")
PY

  # Every server must have answered, and only 2xx (the smoke check; the full
  # run reports it too).
  while read -r set kind label rps _ _ non2xx _; do
    if [ "$non2xx" != 0 ] || awk -v r="$rps" 'BEGIN { exit !(r <= 0) }'; then
      failures+=("$set $kind $label: $rps req/s, $non2xx non-2xx")
    fi
  done <"$results"
}

# --- relocation ------------------------------------------------------------------
relocation() {
  note "relocation"
  local moved=$((RELOCATE_KEYS / 3))
  if $has_redis; then
    local r=()
    for _ in 1 2 3; do start_redis; r+=("127.0.0.1:$port"); done
    local argv=()
    read -r -a argv <<<"${ringcache_arg_sets[0]}"
    start_ringcache --redis "${r[0]}" --redis "${r[1]}" "${argv[@]}"
    local http="127.0.0.1:$port"
    $rtool preload "$http" rel- "$RELOCATE_KEYS" 100 "$RELOCATE_TTL"
    local sizes add remove
    sizes=$($rtool dbsize "${r[0]}" "${r[1]}")
    echo "before: DBSIZE of the two servers and their sum: $sizes" >&2
    add=$($rtool relocate "$http" add "${r[2]}") || { failures+=("relocation: add failed"); stop_all; return; }
    echo "add a third Redis node: $add" >&2
    moved=$("$py" -c "import json, sys; print(json.loads(sys.argv[1])['keys_moved'])" "$add")
    sizes=$($rtool dbsize "${r[@]}")
    echo "after the add: DBSIZE of the three servers and their sum: $sizes" >&2
    read -r _ _ s3 total <<<"$sizes"
    [ "$total" = "$RELOCATE_KEYS" ] || failures+=("relocation (add): the servers hold $total keys, not $RELOCATE_KEYS")
    [ "$s3" = "$moved" ] || failures+=("relocation (add): the new server holds $s3 keys, keys_moved says $moved")
    $rtool check-moved "${r[2]}" rel- "$RELOCATE_TTL" >&2 || failures+=("relocation (add): TTLs not kept")
    remove=$($rtool relocate "$http" remove 2) || { failures+=("relocation: remove failed"); stop_all; return; }
    echo "remove it again: $remove" >&2
    sizes=$($rtool dbsize "${r[@]}")
    echo "after the removal: DBSIZE of the three servers and their sum: $sizes" >&2
    read -r _ _ s3 total <<<"$sizes"
    [ "$total" = "$RELOCATE_KEYS" ] || failures+=("relocation (remove): the servers hold $total keys, not $RELOCATE_KEYS")
    [ "$s3" = 0 ] || failures+=("relocation (remove): the removed server still holds $s3 keys")
    stop_all
  fi
  note "baseline"
  start_redis; local src="127.0.0.1:$port"
  start_redis; local dst="127.0.0.1:$port"
  local base
  base=$($rtool baseline "$src" "$dst" "$moved" 100 "$RELOCATE_TTL") || { failures+=("relocation baseline failed"); stop_all; return; }
  echo "baseline, one key at a time: $base" >&2
  stop_all
  "$py" - "$RELOCATE_KEYS" "${add:-}" "${remove:-}" "$base" <<'PY'
import json, sys
n = int(sys.argv[1])
print(f"\nrelocation: {n:,} keys of 100 B with a 1 h TTL; keys moved per second (wall time from the admin call until GET /rebalance says active false)")
print("| move | keys moved | seconds | keys/s | vs baseline |")
print("|---|---:|---:|---:|---:|")
base = json.loads(sys.argv[4])
for label, arg in (("ringcache: add a 3rd Redis node to 2", sys.argv[2]), ("ringcache: remove it again", sys.argv[3])):
    if arg:
        r = json.loads(arg)
        print(f"| {label} | {r['keys_moved']:,} | {r['seconds']:.2f} | {r['keys_per_s']:,} | {r['keys_per_s'] / base['keys_per_s']:.2f} |")
print(f"| baseline: SCAN + DUMP/PTTL/RESTORE/DEL one key at a time, Python | {base['keys_moved']:,} | {base['seconds']:.2f} | {base['keys_per_s']:,} | 1.00 |")
PY
}

case "$mode" in
  full) http_comparison; relocation ;;
  http) http_comparison ;;
  relocate) relocation ;;
  --smoke) http_comparison; relocation ;;
esac

echo
echo "load_redis.sh: $(( $(date +%s) - started )) s in all; logs in $logs"
if ! $has_redis; then
  failures+=("$RINGCACHE_BIN has no --redis flag: ringcache-redis runs and relocation through ringcache were skipped")
fi
if [ ${#failures[@]} -gt 0 ]; then
  printf 'load_redis.sh: FAILED: %s\n' "${failures[@]}" >&2
  $smoke && echo "redis load smoke: 0 passed, 1 failed"
  exit 1
fi
$smoke && echo "redis load smoke: 1 passed, 0 failed"
exit 0
