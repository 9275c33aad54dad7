#!/usr/bin/env bash
# The Redis client's race stress (examples/redis_stress.rs), bounded: three
# redis-servers on free 127.0.0.1 ports, two busy loops so that may's
# workers get descheduled mid-wait, and the stress program in a debug build
# (as the tests run) for STRESS_SECONDS (default 20). Fails when the program
# crashes or aborts (any panic aborts it), hangs, exits non-zero, completes
# no call, or fails more than 1% of its calls (a failed call is a timeout
# under the load, or a reply the client could not parse, which is what a
# stale socket would give). docs/redis.md ("Two races in may") says what
# it looks for.
#
#   scripts/redis_stress.sh            # 20 s
#   STRESS_SECONDS=60 scripts/redis_stress.sh
#
# Needs redis-server and redis-cli (installed from Debian's packages when
# missing), timeout (coreutils) and python3 (for the port and readiness
# helpers).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${STRESS_SECONDS:-20}
case $seconds in '' | *[!0-9]*)
  echo "redis_stress.sh: STRESS_SECONDS must be a whole number of seconds, not '$seconds'" >&2
  exit 2
  ;;
esac
seconds=$((10#$seconds)) # "08" is eight, not a bad octal number
if [ "$seconds" -lt 1 ]; then
  echo "redis_stress.sh: STRESS_SECONDS must be at least 1" >&2
  exit 2
fi
command -v timeout >/dev/null || { echo "redis_stress.sh: timeout (coreutils) is required" >&2; exit 1; }

command -v python3 >/dev/null || { echo "redis_stress.sh: python3 is required" >&2; exit 1; }
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "redis_stress.sh: installing redis-server (and redis-cli) from Debian's packages"
  . scripts/apt.sh
  apt_install redis-server || { echo "redis_stress.sh: redis-server is required and could not be installed" >&2; exit 1; }
fi
tool="python3 scripts/loadtool.py"
rtool="python3 scripts/redistool.py"

cargo build --example redis_stress
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

logs=$(mktemp -d "${TMPDIR:-/tmp}/ringcache-stress-XXXXXX")
pids=()
ok_run=false
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if $ok_run; then rm -rf "$logs"; else echo "redis_stress.sh: logs kept in $logs" >&2; fi
}
trap cleanup EXIT
# A signal ends the run through the EXIT trap, which stops every process
# started here (the stress program included).
trap 'exit 130' INT
trap 'exit 143' TERM
show_redis_logs() {
  for f in "$logs"/redis-*.log; do
    echo "--- $f" >&2
    tail -n 20 "$f" >&2 || true
  done
}

ports=()
for _ in 1 2 3; do
  port=$($tool free-port)
  mkdir -p "$logs/redis-$port"
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
    --dir "$logs/redis-$port" --logfile "$logs/redis-$port.log" &
  pids+=($!)
  # Ready means our own server answers: another process may have taken
  # the free port first, in which case ours exits.
  if ! $rtool wait-tcp "127.0.0.1:$port" || ! kill -0 "${pids[-1]}" 2>/dev/null ||
    [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" != PONG ]; then
    echo "redis_stress.sh: redis-server on $port did not start; its log:" >&2
    cat "$logs/redis-$port.log" >&2 || true
    exit 1
  fi
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
# The program's own deadline is the bound; timeout is a backstop in case it
# hangs. It runs in the background so that the traps above can stop it.
timeout -k 10 $((seconds + 60)) "$target_dir/debug/examples/redis_stress" "$list" "$seconds" \
  >"$logs/stress.out" 2>"$logs/stress.err" &
pids+=($!)
wait "${pids[-1]}" || status=$?
cat "$logs/stress.out"
if [ "$status" != 0 ]; then
  echo "redis_stress.sh: the stress program exited with status $status (124: it hung; 134: it aborted, a panic; 139: a segmentation fault); its stderr:" >&2
  tail -n 40 "$logs/stress.err" >&2 || true
  show_redis_logs
  exit 1
fi
done_line=$(grep -E '^DONE ok=[0-9]+ err=[0-9]+$' "$logs/stress.out" || true)
if [ -z "$done_line" ]; then
  echo "redis_stress.sh: the stress program printed no 'DONE ok=N err=M' line" >&2
  exit 1
fi
ok=$(sed -E 's/^DONE ok=([0-9]+) err=([0-9]+)$/\1/' <<<"$done_line")
err=$(sed -E 's/^DONE ok=([0-9]+) err=([0-9]+)$/\2/' <<<"$done_line")
if [ "$ok" = 0 ]; then
  echo "redis_stress.sh: no call succeeded" >&2
  show_redis_logs
  exit 1
fi
if [ $((err * 100)) -gt "$ok" ]; then
  echo "redis_stress.sh: $err of $((ok + err)) calls failed, more than 1%" >&2
  tail -n 40 "$logs/stress.err" >&2 || true
  show_redis_logs
  exit 1
fi
ok_run=true
echo "redis_stress.sh: no crash; $ok calls succeeded, $err failed"
