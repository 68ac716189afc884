#!/usr/bin/env bash
# The benchmark suite in one command (README "Benchmarks"): installs the peers it compares with
# (Debian's nginx, haproxy and pushpin, which brings condure and zurl), taskset for the pinned run
# and a font for the chart, builds the gateway and the load generator in release mode, and runs
# every scenario against direct, nginx, HAProxy, Pushpin and stream-edge. Writes
# bench-results/report.md, results.json and chart.png.
#
#   benches/run.sh            full suite with the perf profile and the soak (≤ 12 min on 2 cores)
#   benches/run.sh --quick    small sizes, sanity only (< 60 s once built)
#
# Other flags go to stream-edge-bench (--peers, --scenarios, --repeats, --out, --strict).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v pushpin >/dev/null || need+=(pushpin)
command -v taskset >/dev/null || need+=(util-linux)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
quick=0
for a in "$@"; do [ "$a" = "--quick" ] && quick=1; done
[ "$quick" = 1 ] || command -v perf >/dev/null || need+=(linux-perf)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; }; then
    echo "warning: could not install ${need[*]}; the suite skips peers whose programs are missing" >&2
  fi
fi

echo "== building (release): the gateway and the load generator (the workspace's loadgen/ package)"
cargo build --release --locked --package stream-edge --package stream-edge-bench --bin stream-edge --bin stream-edge-bench

echo "== running the suite"
extra=()
[ "$quick" = 1 ] || ! command -v perf >/dev/null || extra+=(--profile)
target/release/stream-edge-bench --gateway-bin target/release/stream-edge --out bench-results "${extra[@]}" "$@"

# The bounded soak (issue 8): 100,000 session connects/disconnects over both transports, then
# tables, tasks, fds, caches and RSS must be back at their baseline. Full mode only.
if [ "$quick" = 0 ]; then
  echo "== soak: ${SOAK_SESSIONS:-100000} session churn"
  SOAK_SESSIONS="${SOAK_SESSIONS:-100000}" cargo test --release --locked --test it soak -- --ignored --nocapture
  echo "soak figures: bench-results/soak.json"
fi
