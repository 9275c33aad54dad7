#!/usr/bin/env bash
# The whole test suite: the one command the README names and .ci/run calls.
#
#   unit, integration, property, stress and doc tests   (cargo test)
#   every benchmark run once as a smoke test             (cargo test --benches)
#   the ring_ops fuzz target for FUZZ_SECONDS (60)       (scripts/fuzz.sh)
#
# Exits non-zero on the first failure. Needs the nightly toolchain for the
# fuzz stage; scripts/fuzz.sh installs cargo-fuzz when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test"
cargo test --locked

echo "== benchmarks, once each (smoke)"
cargo test --locked --benches

echo "== fuzz ring_ops for ${FUZZ_SECONDS:-60}s"
scripts/fuzz.sh
