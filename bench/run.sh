#!/usr/bin/env bash
# Runs the issue 2 benchmarks against a release build: `make bench` or bench/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${DEVBOX_BIN:-.build/release/devbox}
PY=${PY:-.venv/bin/python}
[ -x "$BIN" ] || swift build -c release --product devbox
command -v wrk >/dev/null || scripts/install-deps.sh --test
scripts/cgroup-fix.sh
dir=$(mktemp -d /tmp/devbox-bench-XXXX)
port=$((20000 + RANDOM % 20000))
token=$("$BIN" token create --data-dir "$dir/data")
DEVBOX_LOG_LEVEL=warning "$BIN" serve --data-dir "$dir/data" --http 127.0.0.1:$port --ssh 127.0.0.1:$((port + 1)) 2>"$dir/serve.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
sleep 1
"$PY" bench/core_bench.py --base http://127.0.0.1:$port --token "$token" --data-dir "$dir/data" --pid $pid "$@"
