#!/usr/bin/env bash
# The dashboard in a real browser: headless Chromium (Debian's package,
# installed when missing) loads GET / from a running ringcache, runs its
# JavaScript, and the rendered DOM must show one legend row per node and one
# ring mark per point; a screenshot is saved. A second server with
# --hash ketama must show a legend of weights with each node's points.
#
#   scripts/browser_test.sh [SCREENSHOT.png]   (default target/dashboard.png)
#
# Only 127.0.0.1 is contacted; Chromium runs with its background networking
# off.
set -euo pipefail
cd "$(dirname "$0")/.."
shot=${1:-target/dashboard.png}

if ! command -v chromium >/dev/null 2>&1; then
  echo "chromium is missing; installing it from Debian's packages"
  . scripts/apt.sh
  apt_install chromium || true
fi
command -v chromium >/dev/null || { echo "browser_test.sh: chromium is required and could not be installed" >&2; exit 1; }

cargo build --release --bin ringcache
# Wherever cargo put it (CARGO_TARGET_DIR, a workspace, or ./target).
bin=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/ringcache
profile=$(mktemp -d)
log="$profile/ringcache.log"
port=$(python3 scripts/loadtool.py free-port)
RUST_LOG=warn "$bin" --listen "127.0.0.1:$port" --nodes 4 --vnodes 160 >/dev/null 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$profile"' EXIT
python3 scripts/loadtool.py wait "127.0.0.1:$port" || { echo "browser_test.sh: $bin did not start:" >&2; cat "$log" >&2; exit 1; }
python3 scripts/loadtool.py preload "127.0.0.1:$port" 500

browser() {
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --virtual-time-budget=5000 "$@" "http://127.0.0.1:$port/" 2>/dev/null
}

dom=$(browser --dump-dom)
rows=$(grep -o 'class="node-row' <<<"$dom" | wc -l)
marks=$(grep -o 'class="mark"' <<<"$dom" | wc -l)
ready=$(grep -c 'data-ready="1"' <<<"$dom" || true)
points=$(python3 -c "import json,urllib.request; print(len(json.load(urllib.request.urlopen('http://127.0.0.1:$port/ring/points'))['points']))")
echo "dashboard: $rows legend rows, $marks ring marks (ring/points lists $points), rendered: $ready"
fail=0
[ "$ready" -ge 1 ] || { echo "browser_test.sh: the page never finished rendering" >&2; fail=1; }
[ "$rows" = 4 ] || { echo "browser_test.sh: expected 4 legend rows, found $rows" >&2; fail=1; }
[ "$marks" = "$points" ] && [ "$points" = 640 ] || { echo "browser_test.sh: expected 640 marks, found $marks" >&2; fail=1; }
mkdir -p "$(dirname "$shot")"
browser --screenshot="$shot" --window-size=1150,560 >/dev/null
[ -s "$shot" ] || { echo "browser_test.sh: no screenshot written" >&2; fail=1; }
echo "screenshot: $shot"

# A ketama cluster: the legend edits weights and shows each node's points.
kport=$(python3 scripts/loadtool.py free-port)
RUST_LOG=warn "$bin" --listen "127.0.0.1:$kport" --hash ketama --nodes 3 >/dev/null 2>"$log.ketama" &
kpid=$!
trap 'kill $pid $kpid 2>/dev/null || true; rm -rf "$profile"' EXIT
python3 scripts/loadtool.py wait "127.0.0.1:$kport" || { echo "browser_test.sh: $bin --hash ketama did not start:" >&2; cat "$log.ketama" >&2; exit 1; }
kdom=$(chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --virtual-time-budget=5000 --dump-dom "http://127.0.0.1:$kport/" 2>/dev/null)
krows=$(grep -o 'class="node-row' <<<"$kdom" | wc -l)
kmarks=$(grep -o 'class="mark"' <<<"$kdom" | wc -l)
kpoints=$(grep -o '(160 points)' <<<"$kdom" | wc -l)
echo "ketama dashboard: $krows legend rows, $kmarks ring marks, $kpoints rows showing 160 points"
grep -q '<th id="size-head">weight</th>' <<<"$kdom" || { echo "browser_test.sh: the ketama legend does not say weight" >&2; fail=1; }
[ "$krows" = 3 ] && [ "$kmarks" = 480 ] && [ "$kpoints" = 3 ] || { echo "browser_test.sh: expected 3 ketama rows of 160 points and 480 marks" >&2; fail=1; }

[ $fail = 0 ] || exit 1
echo "browser test: 2 passed, 0 failed"
