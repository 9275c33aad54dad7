#!/usr/bin/env bash
# Load tests with wrk, bounded in time, on 127.0.0.1 only.
#
#   scripts/load.sh           full run: GET / PUT / 90-10 mix / pipelined GET
#                             (depth 16) against ringcache (request metrics on
#                             and off), GET and pipelined GET against a bare
#                             may_minihttp server (the ceiling), then the churn
#                             scenario; prints a Markdown table.
#   scripts/load.sh --smoke   the churn scenario only, short; fails unless every
#                             answer was 2xx (what .ci/run runs).
#
# Environment: LOAD_SECONDS (10; smoke 3), WRK_THREADS (1), WRK_CONNS (32),
# KEYS (10000 preloaded keys), RINGCACHE_BIN (the binary to load; default
# the release build, wherever cargo puts it). Server logs go to
# $TMPDIR/ringcache-load-*.log and are printed when a server fails to start.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-full}
SECONDS_PER_RUN=${LOAD_SECONDS:-10}
[ "$mode" = "--smoke" ] && SECONDS_PER_RUN=${LOAD_SECONDS:-3}
THREADS=${WRK_THREADS:-1}
CONNS=${WRK_CONNS:-32}
export KEYS=${KEYS:-10000}
tool="python3 scripts/loadtool.py"

if ! command -v wrk >/dev/null 2>&1; then
  echo "wrk is missing; installing it from Debian's packages"
  . scripts/apt.sh
  apt_install wrk || true
fi
command -v wrk >/dev/null || { echo "load.sh: wrk is required and could not be installed" >&2; exit 1; }
command -v python3 >/dev/null || { echo "load.sh: python3 is required" >&2; exit 1; }

cargo build --release --bin ringcache --example bare_minihttp
# Wherever cargo put them (CARGO_TARGET_DIR, a workspace, or ./target).
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
ringcache_bin=${RINGCACHE_BIN:-$target_dir/release/ringcache}
bare_bin=$target_dir/release/examples/bare_minihttp
logs=$(mktemp -d "${TMPDIR:-/tmp}/ringcache-load-XXXXXX")

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Starts ringcache with extra flags; sets $port. (Not a $(...) substitution:
# the server would keep its stdout pipe open and the substitution would hang.)
start_ringcache() {
  port=$($tool free-port)
  local log="$logs/ringcache-$port.log"
  RUST_LOG=warn "$ringcache_bin" --listen "127.0.0.1:$port" "$@" >/dev/null 2>"$log" &
  pids+=($!)
  if ! $tool wait "127.0.0.1:$port"; then
    echo "load.sh: $ringcache_bin did not start; its log:" >&2
    cat "$log" >&2
    return 1
  fi
}

stop_last() { kill "${pids[-1]}" 2>/dev/null || true; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }

# Runs wrk; prints "rps p50 p99 non2xx errors" on one line.
run_wrk() { # port script
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"${SECONDS_PER_RUN}s" --latency -s "scripts/wrk/$2" "http://127.0.0.1:$1" 2>&1)
  echo "$out" >&2
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx or 3xx responses/ {print $NF}')
  errors=$(echo "$out" | awk '/Socket errors/ {gsub(",",""); print $4+$6+$8+$10}')
  echo "$rps $p50 $p99 ${non2xx:-0} ${errors:-0}"
}

churn_scenario() {
  start_ringcache
  $tool preload "127.0.0.1:$port" "$KEYS"
  $tool churn "127.0.0.1:$port" "$SECONDS_PER_RUN" > /tmp/ringcache-churn.$$ &
  churn_pid=$!
  read -r rps p50 p99 non2xx errors < <(run_wrk "$port" get.lua)
  wait "$churn_pid"
  changes=$(cat /tmp/ringcache-churn.$$); rm -f /tmp/ringcache-churn.$$
  $tool wait-idle "127.0.0.1:$port"
  stop_last
  echo "churn: GET $rps req/s while $changes; non-2xx answers: $non2xx; socket errors: $errors"
  if [ "$non2xx" != 0 ]; then
    echo "load.sh: FAILED: $non2xx GETs of preloaded keys did not answer 200 during churn" >&2
    return 1
  fi
}

if [ "$mode" = "--smoke" ]; then
  churn_scenario
  echo "load smoke: 1 passed, 0 failed"
  exit 0
fi

echo "== bare may_minihttp (ceiling)"
port=$($tool free-port)
"$bare_bin" "127.0.0.1:$port" 2>"$logs/bare.log" &
pids+=($!)
$tool wait "127.0.0.1:$port" || { cat "$logs/bare.log" >&2; exit 1; }
read -r bare_rps bare_p50 bare_p99 _ _ < <(run_wrk "$port" get.lua)
read -r barep_rps barep_p50 barep_p99 _ _ < <(run_wrk "$port" pipeline.lua)
stop_last

rows=()
for metrics in on off; do
  flags=()
  [ "$metrics" = off ] && flags=(--no-request-metrics)
  echo "== ringcache, request metrics $metrics"
  start_ringcache "${flags[@]}"
  $tool preload "127.0.0.1:$port" "$KEYS"
  for script in get put mix pipeline; do
    read -r rps p50 p99 non2xx errors < <(run_wrk "$port" "$script.lua")
    base=$bare_rps
    [ "$script" = pipeline ] && base=$barep_rps
    ratio=$(python3 -c "print(f'{$rps / $base:.2f}')")
    rows+=("| ringcache $script (metrics $metrics) | $rps | $p50 | $p99 | $ratio | $non2xx |")
  done
  stop_last
done

echo "== churn"
churn_scenario > /tmp/ringcache-churn-line.$$
churn_line=$(tail -1 /tmp/ringcache-churn-line.$$); rm -f /tmp/ringcache-churn-line.$$

cat <<TABLE

wrk -t$THREADS -c$CONNS -d${SECONDS_PER_RUN}s, $KEYS keys of 64-byte values, $(nproc) cores, $(date -u +%Y-%m-%d)
| run | requests/s | p50 | p99 | vs bare (same kind) | non-2xx |
|---|---:|---:|---:|---:|---:|
| bare may_minihttp GET (ceiling) | $bare_rps | $bare_p50 | $bare_p99 | 1.00 | - |
| bare may_minihttp pipelined GET, depth 16 | $barep_rps | $barep_p50 | $barep_p99 | 1.00 | - |
$(printf '%s\n' "${rows[@]}")

$churn_line
TABLE
