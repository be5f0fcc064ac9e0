#!/usr/bin/env bash
# Issue 4 benchmark: clone of a ~50 MB / 5,000-file repository into a devbox versus a
# plain `git clone` from the same local git server, one run, release build.
#   bench/clone_bench.sh [--runs N] [--files N] [--file-size BYTES]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${DEVBOX_BIN:-.build/release/devbox}
PY=${PY:-.venv/bin/python}
[ -x "$BIN" ] || swift build -c release --product devbox
scripts/cgroup-fix.sh
exec "$PY" bench/clone_bench.py --bin "$BIN" "$@"
