#!/usr/bin/env bash
# Exec round trip (issue 9): `true` through REST and through MCP (HTTP /mcp) versus a bare
# `crun exec <id> true` on the same box, in one run. Goal: p50 within 2x of crun's.
#
#   bench/exec_bench.sh            # release build (built if missing), N=300
#   N=1000 bench/exec_bench.sh --json
set -euo pipefail
# Any failure names itself: set -e alone ends the script without a word (a failed command
# substitution prints nothing), which once made this benchmark exit silently.
trap 'echo "exec_bench.sh: failed (status $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
die() { echo "exec_bench.sh: $*" >&2; exit 1; }
cd "$(dirname "$0")/.."   # this checkout, wherever it is
BIN=${DEVBOX_BIN:-.build/release/devbox}
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
N=${N:-300}
[ -x "$BIN" ] || swift build -c release --product devbox
scripts/cgroup-fix.sh

dir=$(mktemp -d /tmp/devbox-exec-bench-XXXX)
port=$((20000 + RANDOM % 20000))
pid=""
cleanup() {
  [ -n "${id:-}" ] && curl -s -o /dev/null -X DELETE "http://127.0.0.1:$port/api/v1/devboxes/$id" -H "X-Provider-Token: $token" || true
  [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  rm -rf "$dir"
}
trap cleanup EXIT

token=$("$BIN" token create --data-dir "$dir/data")
DEVBOX_LOG_LEVEL=warning "$BIN" serve --data-dir "$dir/data" --http 127.0.0.1:$port --ssh 127.0.0.1:$((port + 1)) \
  2>"$dir/serve.log" &
pid=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.05; done
curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || die "serve did not start: $(tail -5 "$dir/serve.log")"
id=$(curl -sf -X POST "http://127.0.0.1:$port/api/v1/devboxes" -H "X-Provider-Token: $token" \
  -H 'Content-Type: application/json' -d '{"name":"exec-bench"}' | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for _ in $(seq 600); do
  state=$(curl -sf "http://127.0.0.1:$port/api/v1/devboxes/$id" -H "X-Provider-Token: $token" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["state"])')
  [ "$state" = ready ] && break
  [ "$state" = failed ] && die "devbox $id failed"
  sleep 0.1
done
[ "$state" = ready ] || die "devbox $id not ready after 60 s (state: $state)"
# The box may come from the warm pool, named wp_… rather than after the devbox: resolve it
# through its <data>/boxes alias (bench/box_container.py fails with a message if it can't).
container=$("$PY" bench/box_container.py "$dir/data" "$id")
"$PY" bench/exec_bench.py --base "http://127.0.0.1:$port" --token "$token" --box "$id" --container "$container" --n "$N" "$@"
