#!/usr/bin/env bash
# The whole test suite: the one command the README names and .ci/run calls.
#
#   unit, integration, property, stress and doc tests   (cargo test)
#   every benchmark run once as a smoke test             (cargo test --benches)
#   wrk churn smoke: reads during membership changes     (scripts/load.sh --smoke)
#   the dashboard in headless Chromium                   (scripts/browser_test.sh)
#   the ring_ops fuzz target for FUZZ_SECONDS (120)      (scripts/fuzz.sh)
#
# Exits non-zero on the first failure. Needs the nightly toolchain for the
# fuzz stage; scripts/fuzz.sh installs cargo-fuzz, scripts/load.sh wrk,
# scripts/browser_test.sh Chromium and this script redis-server (for the
# hit-ratio bench) when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test"
cargo test

echo "== benchmarks, once each (smoke)"
# benches/hit_ratio.rs compares against a real redis-server (it starts its
# own on 127.0.0.1) and fails when it is missing.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server is missing; installing it from Debian's packages"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server
  else sudo apt-get update -qq && sudo apt-get install -y -qq redis-server; fi
fi
cargo test --benches

echo "== wrk churn smoke (every GET must answer 200 while nodes change)"
scripts/load.sh --smoke

echo "== dashboard in headless Chromium"
scripts/browser_test.sh

echo "== fuzz ring_ops for ${FUZZ_SECONDS:-120}s"
scripts/fuzz.sh

# Reached only if every stage passed (set -e stops at the first failure).
echo "test suite stages: 5 passed, 0 failed"
