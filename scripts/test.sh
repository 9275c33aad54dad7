#!/usr/bin/env bash
# The whole test suite: the one command the README names and .ci/run calls.
#
#   unit, integration, property, stress and doc tests   (cargo test)
#   every benchmark run once as a smoke test             (cargo test --benches)
#   wrk churn smoke: reads during membership changes     (scripts/load.sh --smoke)
#   Redis fleet smoke: ringcache before 3 redis-servers,
#   nginx before 3 memcached, relocation between servers (scripts/load_redis.sh --smoke)
#   the Redis client's race stress for STRESS_SECONDS (20) (scripts/redis_stress.sh)
#   the dashboard in headless Chromium                   (scripts/browser_test.sh)
#   the ring_ops fuzz target for FUZZ_SECONDS (120) and
#   http_framing for HTTP_FUZZ_SECONDS (60)              (scripts/fuzz.sh)
#
# Exits non-zero on the first failure. Needs the nightly toolchain for the
# fuzz stage; scripts/fuzz.sh installs cargo-fuzz, scripts/load.sh wrk,
# scripts/load_redis.sh nginx, its memc module and memcached,
# scripts/browser_test.sh Chromium and this script redis-server (for the
# Redis-node tests and the hit-ratio bench) when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/apt.sh

# Each stage runs in turn; the first that fails is named and ends the run.
passed=0
stage() { # name command...
  local name=$1
  shift
  echo "== $name"
  if ! "$@"; then
    echo "test.sh: FAILED at stage '$name' (after $passed passed stages): $*" >&2
    echo "test suite stages: $passed passed, 1 failed"
    exit 1
  fi
  passed=$((passed + 1))
}

# tests/redis_nodes.rs runs ringcache in front of real redis-servers and
# benches/hit_ratio.rs compares against one (each starts its own on
# 127.0.0.1); both fail when it is missing.
ensure_redis() {
  command -v redis-server >/dev/null 2>&1 && return 0
  echo "redis-server is missing; installing it from Debian's packages"
  apt_install redis-server
}

stage "redis-server for the Redis-node tests and the hit-ratio bench" ensure_redis
stage "cargo test" cargo test
stage "benchmarks, once each (smoke)" cargo test --benches
stage "wrk churn smoke (every GET must answer 200 while nodes change)" scripts/load.sh --smoke
stage "Redis fleet smoke (ringcache before 3 redis-servers and nginx before 3 memcached answer 2xx; relocation keeps every key)" scripts/load_redis.sh --smoke
stage "Redis client race stress for ${STRESS_SECONDS:-20}s (no crash beside two busy loops)" scripts/redis_stress.sh
stage "dashboard in headless Chromium" scripts/browser_test.sh
stage "fuzz ring_ops for ${FUZZ_SECONDS:-120}s and http_framing for ${HTTP_FUZZ_SECONDS:-60}s" scripts/fuzz.sh

echo "test suite stages: $passed passed, 0 failed"
