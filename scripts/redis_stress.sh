#!/usr/bin/env bash
# The Redis client's race stress (examples/redis_stress.rs), bounded: three
# redis-servers on free 127.0.0.1 ports, two busy loops so that may's
# workers get descheduled mid-wait, and the stress program in a debug build
# (as the tests run) for STRESS_SECONDS (default 20). Fails when the program
# crashes or aborts (any panic aborts it), exits non-zero, or completes no
# call; calls that time out under the load are counted, not failures.
# docs/redis.md ("Two races in may") says what it looks for.
#
#   scripts/redis_stress.sh            # 20 s
#   STRESS_SECONDS=60 scripts/redis_stress.sh
#
# Needs redis-server (installed from Debian's packages when missing) and
# python3 (for the port and readiness helpers).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${STRESS_SECONDS:-20}
case $seconds in '' | *[!0-9]*)
  echo "redis_stress.sh: STRESS_SECONDS must be a whole number of seconds, not '$seconds'" >&2
  exit 2
  ;;
esac

command -v python3 >/dev/null || { echo "redis_stress.sh: python3 is required" >&2; exit 1; }
if ! command -v redis-server >/dev/null; then
  echo "redis_stress.sh: installing redis-server from Debian's packages"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; fi
fi
tool="python3 scripts/loadtool.py"
rtool="python3 scripts/redistool.py"

cargo build --example redis_stress
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

logs=$(mktemp -d "${TMPDIR:-/tmp}/ringcache-stress-XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

ports=()
for _ in 1 2 3; do
  port=$($tool free-port)
  mkdir -p "$logs/redis-$port"
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
    --dir "$logs/redis-$port" --logfile "$logs/redis-$port.log" &
  pids+=($!)
  $rtool wait-tcp "127.0.0.1:$port" || {
    echo "redis_stress.sh: redis-server on $port did not start; its log:" >&2
    cat "$logs/redis-$port.log" >&2 || true
    exit 1
  }
  ports+=("$port")
done

# Two busy loops, ended with the run (the trap kills them).
for _ in 1 2; do
  bash -c 'while :; do :; done' &
  pids+=($!)
done

list=$(IFS=,; echo "${ports[*]}")
echo "redis_stress.sh: ${seconds}s against redis-servers on ports $list, beside two busy loops"
status=0
# The program's own deadline is the bound; timeout is a backstop in case
# it hangs.
timeout $((seconds + 60)) "$target_dir/debug/examples/redis_stress" "$list" "$seconds" \
  >"$logs/stress.out" 2>"$logs/stress.err" || status=$?
cat "$logs/stress.out"
if [ "$status" != 0 ]; then
  echo "redis_stress.sh: the stress program exited with status $status (124: it hung; 134: it aborted); its stderr:" >&2
  tail -n 40 "$logs/stress.err" >&2 || true
  exit 1
fi
ok=$(sed -n 's/^DONE ok=\([0-9]*\) err=[0-9]*$/\1/p' "$logs/stress.out")
if [ -z "$ok" ] || [ "$ok" = 0 ]; then
  echo "redis_stress.sh: no call succeeded (expected a 'DONE ok=N err=M' line with N > 0)" >&2
  exit 1
fi
echo "redis_stress.sh: no crash; $ok calls succeeded"
