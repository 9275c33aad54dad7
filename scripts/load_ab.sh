#!/usr/bin/env bash
# Interleaved A/B load comparison, for numbers steadier than one load.sh run
# on a shared machine: ROUNDS rounds, each running wrk against the bare
# may_minihttp server and against every ringcache binary given, in turn,
# for GET and for pipelined GET (depth 16); prints the median requests/s
# and p99 of each, and each median as a ratio to the bare server's.
#
#   scripts/load_ab.sh [LABEL=BINARY ...]   (default: new=the release build)
#
# Environment: ROUNDS (5), LOAD_SECONDS (5), WRK_CONNS (32), KEYS (10000).
# Only 127.0.0.1 is contacted; every run is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
SECS=${LOAD_SECONDS:-5}
CONNS=${WRK_CONNS:-32}
export KEYS=${KEYS:-10000}
tool="python3 scripts/loadtool.py"
command -v wrk >/dev/null || { echo "load_ab.sh: wrk is required (apt-get install wrk)" >&2; exit 1; }
cargo build --release --bin ringcache --example bare_minihttp >&2
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
servers=("bare=$target_dir/release/examples/bare_minihttp")
if [ $# -eq 0 ]; then set -- "new=$target_dir/release/ringcache"; fi
servers+=("$@")

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
declare -A port
for s in "${servers[@]}"; do
  label=${s%%=*}; bin=${s#*=}
  p=$($tool free-port)
  if [ "$label" = bare ]; then "$bin" "127.0.0.1:$p" 2>/dev/null &
  else RUST_LOG=warn "$bin" --listen "127.0.0.1:$p" >/dev/null 2>&1 &
  fi
  pids+=($!)
  $tool wait "127.0.0.1:$p"
  [ "$label" = bare ] || $tool preload "127.0.0.1:$p" "$KEYS"
  port[$label]=$p
done

results=$(mktemp)
for round in $(seq "$ROUNDS"); do
  for script in get pipeline; do
    for s in "${servers[@]}"; do
      label=${s%%=*}
      out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "scripts/wrk/$script.lua" "http://127.0.0.1:${port[$label]}")
      rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
      p99=$(echo "$out" | awk '$1=="99%" {print $2}')
      echo "$script $label $rps $p99" >> "$results"
      echo "round $round $script $label: $rps req/s, p99 $p99" >&2
    done
  done
done
python3 - "$results" "$ROUNDS" "$SECS" "$CONNS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"wrk -t1 -c{sys.argv[4]}, {sys.argv[3]} s per run, {sys.argv[2]} interleaved rounds; medians")
print("| kind | server | requests/s | p99 | vs bare |")
print("|---|---|---:|---:|---:|")
for kind in ("get", "pipeline"):
    med = {}
    for k, label, rps, p99 in rows:
        if k == kind:
            med.setdefault(label, ([], []))
            med[label][0].append(float(rps)); med[label][1].append(p99)
    bare = statistics.median(med["bare"][0])
    for label, (rps, p99s) in med.items():
        m = statistics.median(rps)
        p99 = sorted(p99s)[len(p99s) // 2]
        print(f"| {kind} | {label} | {m:,.0f} | {p99} | {m / bare:.2f} |")
PY
