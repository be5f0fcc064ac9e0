#!/usr/bin/env bash
# Runs the issue 2 benchmarks against a release build: `make bench` or bench/run.sh [args].
#
# For each box network mode in BENCH_NETWORKS (default "isolated host": a network of its
# own per box, then the host's, so the cost of isolation is measured in the same run), two
# serves one after the other, each on a fresh data directory:
#   cold: DEVBOX_WARM_POOL=0, every create starts its own box (the ratio to bare crun is
#         the service's overhead); also wrk, idle RSS and idle box memory;
#   warm: DEVBOX_WARM_POOL=<the burst size>, a full pool before each create and each burst
#         (what a create costs when the pool has a box ready).
# The bare reference copies a devbox's bundle, so with isolated boxes it makes a network
# namespace too (without the veth): compare the modes' absolute figures as well as ratios.
# Arguments go to both runs of bench/core_bench.py (e.g. --sequential 20 --rounds 5).
# BENCH_KINDS picks the runs (default "cold warm"; `BENCH_KINDS=cold --no-extras` times
# only cold creates, e.g. while iterating on the create path).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${DEVBOX_BIN:-.build/release/devbox}
PY=${PY:-.venv/bin/python}
[ -x "$BIN" ] || swift build -c release --product devbox
command -v wrk >/dev/null || scripts/install-deps.sh --test
scripts/cgroup-fix.sh

concurrent=20
for ((i = 1; i <= $#; i++)); do
    [ "${!i}" = --concurrent ] && { j=$((i + 1)); concurrent=${!j}; }
done

pid=
dir=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    if [ -n "$dir" ]; then rm -rf "$dir"; fi
    pid= dir=
}
trap cleanup EXIT

run() {  # run POOL [core_bench args...]
    local pool=$1
    shift
    dir=$(mktemp -d /tmp/devbox-bench-XXXX)
    local port=$((20000 + RANDOM % 20000))
    local token
    token=$("$BIN" token create --data-dir "$dir/data")
    # The boxes' resolver gets a dead local upstream: a benchmark asks no real resolver.
    DEVBOX_NETWORK=$network DEVBOX_DNS_UPSTREAM=127.0.0.1:9 \
    DEVBOX_WARM_POOL=$pool DEVBOX_LOG_LEVEL=warning "$BIN" serve --data-dir "$dir/data" --http 127.0.0.1:$port \
        --ssh 127.0.0.1:$((port + 1)) 2>"$dir/serve.log" &
    pid=$!
    for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
    sleep 1
    "$PY" bench/core_bench.py --base http://127.0.0.1:$port --token "$token" --data-dir "$dir/data" --pid $pid \
        --pool "$pool" "$@"
    cleanup
}

kinds=" ${BENCH_KINDS:-cold warm} "
for network in ${BENCH_NETWORKS:-isolated host}; do
    if [[ $kinds == *" cold "* ]]; then
        echo "=== DEVBOX_NETWORK=$network, cold: DEVBOX_WARM_POOL=0 (every create starts its own box) ==="
        run 0 "$@"
        echo
    fi
    if [[ $kinds == *" warm "* ]]; then
        echo "=== DEVBOX_NETWORK=$network, warm: DEVBOX_WARM_POOL=$concurrent (a full pool before each create and each burst) ==="
        run "$concurrent" --no-extras "$@"
        echo
    fi
done
