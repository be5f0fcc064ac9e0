"""The OpenAPI document is exact: schemathesis fuzzes a real serve against /openapi.json.

Every check (`--checks all`: status codes, content types, headers, response schemas,
negative data rejected, positive data accepted, missing headers, undeclared methods 405 +
Allow, auth ignored, ...) over the examples, coverage, fuzzing and stateful phases,
bounded in examples and time and seeded. Zero failures are allowed; the few deliberate
answers a generic check cannot know (503 of the unconfigured GitHub integration, values
only the server can judge, the MCP transport's statuses, destroyed boxes kept readable)
are listed with their reasons in schemathesis.toml beside this file.

Excluded operations: the port proxy (`/ports/`) forwards whatever the app in a box
answers (statuses, headers, bodies the document cannot describe) and is tested in
test_ports.py.

Traffic stays on 127.0.0.1: the service listens there, GitHub (clones of fuzzed
repositories) points at 127.0.0.1:9 where nothing listens, and the boxes' resolver asks
127.0.0.1:9 too (the harness default).
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))

# Bounds: CI budget. --max-time ends fuzzing and stateful repetition; the subprocess
# timeout is the hard stop on top of it.
MAX_TIME = int(os.environ.get("DEVBOX_FUZZ_MAX_TIME", "150"))
MAX_EXAMPLES = int(os.environ.get("DEVBOX_FUZZ_MAX_EXAMPLES", "10"))
SEED = os.environ.get("DEVBOX_FUZZ_SEED", "20261207")


def test_openapi_fuzz(fresh_server, tmp_path):
    s = fresh_server(env={
        "DEVBOX_WARM_POOL": "0",
        "DEVBOX_GITHUB_URL": "http://127.0.0.1:9",
        "DEVBOX_GITHUB_API_URL": "http://127.0.0.1:9",
    }).start()
    report = tmp_path / "events.ndjson"
    cmd = [
        SCHEMATHESIS, "--config-file", str(HERE / "schemathesis.toml"), "run", f"{s.base}/openapi.json",
        "--checks", "all", "--exclude-checks", "use_after_free",  # see schemathesis.toml
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", str(MAX_EXAMPLES),
        "--max-time", str(MAX_TIME),
        "--seed", SEED,
        # One worker: with two threads, hypothesis' ast.parse of filter lambdas can hit
        # CPython 3.11's "AST constructor recursion depth mismatch" (a crash of the tool,
        # seen twice in full runs), which fails the test for nothing the server did.
        "--workers", "1",
        "--request-timeout", "30",
        "--exclude-path-regex", "^/api/v1/devboxes/\\{id\\}/ports",
        "--header", f"X-Provider-Token: {s.token}",
        "--suppress-health-check", "all",
        "--no-shrink",
        "--report", "ndjson", "--report-ndjson-path", str(report),
    ]
    started = time.monotonic()
    # Run in tmp_path: schemathesis keeps a cache (.schemathesis/) in its working directory;
    # a fresh one each run keeps the run deterministic and the checkout clean.
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=MAX_TIME + 120, cwd=str(tmp_path),
                         env={**os.environ, "NO_COLOR": "1"})
    elapsed = time.monotonic() - started
    print(f"schemathesis took {elapsed:.0f} s\n{out.stdout[-6000:]}")
    # The service survived it, and the run's devboxes go with the fixture's close().
    assert requests.get(s.base + "/healthz", timeout=5).status_code == 200
    assert out.returncode == 0, f"schemathesis found failures ({elapsed:.0f} s):\n{out.stdout[-20000:]}\n{out.stderr[-3000:]}"
    summary = out.stdout.strip().splitlines()[-1]
    assert "failure" not in summary and "error" not in summary, out.stdout[-6000:]
    # It really ran: every selected operation tested, stateful scenarios included.
    tested = re.search(r"Tested: (\d+)", out.stdout)
    assert tested and int(tested.group(1)) >= 30, out.stdout[-6000:]
    assert "Stateful" in out.stdout and "Scenarios:" in out.stdout, out.stdout[-6000:]
