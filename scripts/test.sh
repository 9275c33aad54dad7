#!/usr/bin/env bash
# The whole test suite: the one command the README names and .ci/run calls.
#
#   unit, integration, property, stress and doc tests   (cargo test)
#   every benchmark run once as a smoke test             (cargo test --benches)
#   wrk churn smoke: reads during membership changes     (scripts/load.sh --smoke)
#   the ring_ops fuzz target for FUZZ_SECONDS (60)       (scripts/fuzz.sh)
#
# Exits non-zero on the first failure. Needs the nightly toolchain for the
# fuzz stage; scripts/fuzz.sh installs cargo-fuzz and scripts/load.sh wrk
# when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test"
cargo test

echo "== benchmarks, once each (smoke)"
cargo test --benches

echo "== wrk churn smoke (every GET must answer 200 while nodes change)"
scripts/load.sh --smoke

echo "== fuzz ring_ops for ${FUZZ_SECONDS:-60}s"
scripts/fuzz.sh

# Reached only if every stage passed (set -e stops at the first failure).
echo "test suite stages: 4 passed, 0 failed"
