"""bench/exec_bench.sh runs from any checkout and any directory, finds the box however the
warm pool named it, and fails with a message rather than silently."""
import json
import os
import subprocess
import sys

from devbox_harness import BIN, Server

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
RESOLVE = os.path.join(REPO, "bench/box_container.py")


def test_box_container_finds_a_box_taken_from_the_warm_pool(fresh_server):
    s = fresh_server(env={"DEVBOX_WARM_POOL": "2"}).start()
    s.wait_pool_full()
    d = s.wait_state(s.create({"name": "pooled"})["id"])
    assert d["state"] == "ready"
    name = s.box_name(d["id"])
    assert "-wp_" in name, f"expected a pooled box, got {name}"  # not named after the devbox
    r = subprocess.run([sys.executable, RESOLVE, s.data_dir, d["id"]], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == name
    r = subprocess.run([sys.executable, RESOLVE, s.data_dir, "dbx_nosuchbox"], capture_output=True, text=True)
    assert r.returncode != 0 and "dbx_nosuchbox" in r.stderr


def test_exec_bench_runs_from_elsewhere_and_fails_loudly(tmp_path):
    env = {**os.environ, "DEVBOX_BIN": os.path.abspath(BIN), "N": "5", "DEVBOX_WARM_POOL": "2"}
    r = subprocess.run(["bash", os.path.join(REPO, "bench/exec_bench.sh"), "--json"], cwd=tmp_path,
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout[r.stdout.index("{"):])
    assert {"crun", "rest", "mcp"} <= set(out)
    # a serve that cannot start: a message on stderr, not a silent exit
    env["DEVBOX_BIN"] = "/bin/false"
    r = subprocess.run(["bash", os.path.join(REPO, "bench/exec_bench.sh")], cwd=tmp_path,
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode != 0
    assert "exec_bench.sh: failed" in r.stderr, r.stderr
