#!/usr/bin/env bash
# Runs the fuzz targets, one after the other:
#
#   ring_ops      (fuzz/fuzz_targets/ring_ops.rs): random membership edits
#                 and lookups applied to the lock-free Ring and to the naive
#                 ReferenceRing, which must agree on every answer. Inputs
#                 starting with the byte 'K' (0x4B) fuzz ketama rings, all
#                 others xxh3 rings (see the input format in the target's
#                 module docs; fuzz/corpus/ring_ops/seed-ketama-* are the
#                 ketama seeds).
#   http_framing  (fuzz/fuzz_targets/http_framing.rs): arbitrary bytes,
#                 split at arbitrary points, through the HTTP session: no
#                 panic, no buffering beyond the limits, and the same
#                 requests and replies however the stream is split.
#
# Exits non-zero if libFuzzer finds a crash or a disagreement; the input that
# triggered it is then in fuzz/artifacts/TARGET/ (git-ignored), and
#   RING_OPS_TRACE=1 fuzz/target/x86_64-unknown-linux-gnu/release/ring_ops FILE
# prints the op sequence a ring_ops input decodes to.
#
# Environment:
#   FUZZ_SECONDS       how long to fuzz ring_ops, in seconds (default 120:
#                      xxh3 and ketama inputs share it, and a ketama input
#                      costs ~50 ms under the sanitizer, mostly MD5)
#   HTTP_FUZZ_SECONDS  how long to fuzz http_framing (default 60)
#   FUZZ_TARGETS       which targets to run (default "ring_ops http_framing")
#   FUZZ_TIMEOUT       seconds one input may take before it counts as a hang
#                      (default 20; a normal input takes well under a second)
#
# Each target's working corpus is fuzz/target/corpus/TARGET (git-ignored,
# kept between runs so coverage accumulates). libFuzzer writes new inputs
# into the FIRST corpus directory it is given, so the working corpus goes
# first and the committed seeds (fuzz/corpus/TARGET/seed-*) second: they are
# read, never written.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

timeout="${FUZZ_TIMEOUT:-20}"
install_log=/tmp/fuzzinstall.log

# True while a `cargo install cargo-fuzz` is running on this machine (ours
# from an earlier run, or one started in the background by someone else).
install_running() {
    pgrep -f 'cargo install cargo-fuzz' >/dev/null 2>&1 ||
        pgrep -f 'cargo-install cargo-fuzz' >/dev/null 2>&1
}

ensure_cargo_fuzz() {
    if cargo fuzz --version >/dev/null 2>&1; then
        return
    fi
    # Wait for an install already in progress rather than racing it with a
    # second one (up to 20 minutes; a cold build takes a few).
    local waited=0
    while install_running && ((waited < 1200)); do
        if ((waited % 60 == 0)); then
            echo "fuzz.sh: waiting for a running cargo-fuzz install ($install_log)..."
        fi
        sleep 5
        waited=$((waited + 5))
    done
    if cargo fuzz --version >/dev/null 2>&1; then
        return
    fi
    echo "fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
}

ensure_cargo_fuzz

# cargo-fuzz needs nightly-only flags (-Zsanitizer=address and friends). Use
# the nightly toolchain when there is one; otherwise let the stable compiler
# accept them through RUSTC_BOOTSTRAP (no other toolchain can be fetched on
# some machines).
if rustup run nightly rustc --version >/dev/null 2>&1; then
    cargo=(cargo +nightly)
else
    echo "fuzz.sh: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1"
    export RUSTC_BOOTSTRAP=1
    cargo=(cargo)
fi

# fuzz/ is a workspace of its own with an uncommitted Cargo.lock. Start it
# from the crate's lock file, so the ring is fuzzed against the same
# dependency versions the crate builds with; cargo adds libfuzzer-sys.
if [[ ! -f fuzz/Cargo.lock && -f Cargo.lock ]]; then
    cp Cargo.lock fuzz/Cargo.lock
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

fuzz_one() {
    local target="$1" seconds="$2"
    local seeds="fuzz/corpus/$target" corpus="fuzz/target/corpus/$target"
    mkdir -p "$corpus"
    echo "fuzz.sh: ${cargo[*]} fuzz run --debug-assertions $target $corpus $seeds" \
        "-- -max_total_time=$seconds -timeout=$timeout -print_final_stats=1"
    local status=0
    "${cargo[@]}" fuzz run --debug-assertions "$target" "$corpus" "$seeds" -- \
        -max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1 \
        2>&1 | tee "$log" || status=$?

    # The last status line libFuzzer printed: execs, coverage, corpus size.
    local last execs
    last="$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)"
    execs="$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)"
    echo "fuzz.sh: $target: last status: ${last:-none}"
    echo "fuzz.sh: $target: executed ${execs:-?} inputs (time budget ${seconds}s)"

    if ((status != 0)); then
        echo "fuzz.sh: FAILED: $target: the fuzzer found a crash or disagreement (exit $status);" \
            "see the report above and fuzz/artifacts/$target/" >&2
        exit "$status"
    fi
    echo "fuzz.sh: $target: no crash found"
}

for target in ${FUZZ_TARGETS:-ring_ops http_framing}; do
    case "$target" in
    ring_ops) fuzz_one ring_ops "${FUZZ_SECONDS:-120}" ;;
    http_framing) fuzz_one http_framing "${HTTP_FUZZ_SECONDS:-60}" ;;
    *)
        echo "fuzz.sh: unknown target $target (ring_ops, http_framing)" >&2
        exit 2
        ;;
    esac
done
