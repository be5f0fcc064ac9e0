#!/bin/bash
# The fast tier of the Swift tests (`make unit`): every test but the integration targets
# (SandboxTests and DevboxIntegrationTests need root, crun and the host). No root, no crun,
# no network but 127.0.0.1; about ten seconds. Runs the built test bundle directly, so any
# user who can read the build directory can run it (`swift test` wants to write .build):
#   make build && runuser -u nobody -- make unit
# Extra arguments go to the test bundle (e.g. --filter RouterTests).
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=.build/debug/devboxPackageTests.xctest
if [ ! -x "$bundle" ]; then
    echo "unit: $bundle is missing: build first (make build, or swift build --build-tests)" >&2
    exit 1
fi
# The Fernet interop tests want Python with `cryptography`: the venv's when this user can run
# it (it may live under /root), else python3 from PATH.
if [ -z "${DEVBOX_TEST_PYTHON:-}" ] && .venv/bin/python -c 'import cryptography' 2>/dev/null; then
    export DEVBOX_TEST_PYTHON="$PWD/.venv/bin/python"
fi
# Test files go to a directory of this user's, removed afterwards.
TMPDIR=$(mktemp -d "${TMPDIR:-/tmp}/devbox-unit.XXXXXX")
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
# One test at a time: in parallel, on 2 busy cores, the tests that time real sockets (a refused
# connection within 5 s, idle timeouts) starve and fail; serial takes ~30 s.
"$bundle" --testing-library swift-testing --no-parallel --skip '^(SandboxTests|DevboxIntegrationTests)\.' "$@"
