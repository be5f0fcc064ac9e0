"""What a process in a devbox can and cannot see or do, through the real service."""
import hashlib
import os

import pytest

from devbox_harness import Server

PLANS = "tiny:96:0.5:64,small:1024:1:512"


@pytest.fixture(scope="module")
def plan_server():
    s = Server(env={"DEVBOX_PLANS": PLANS}).start()
    yield s
    s.close()


def test_memory_limit_is_enforced(plan_server):
    d = plan_server.create({"name": "oom", "plan": "tiny", "setup_commands": ["head -c 400M /dev/zero | tail > /dev/null"]})
    d = plan_server.wait_state(d["id"])
    assert d["state"] == "failed"
    msg = d["error"]["message"]
    assert "signal 9" in msg or "code 137" in msg, msg


def test_pids_limit_is_enforced(plan_server):
    d = plan_server.create({"name": "forkbomb", "plan": "tiny",
                            "setup_commands": ["for i in $(seq 1 200); do sleep 30 & done; wait"]})
    d = plan_server.wait_state(d["id"])
    assert d["state"] == "failed"
    out = plan_server.operations(d["id"])[3]["output"].lower()
    assert "fork" in out or "resource temporarily unavailable" in out, out


def test_unknown_plan_lists_configured_plans(plan_server):
    r = plan_server.request("POST", "/api/v1/devboxes", json_body={"name": "x", "plan": "medium"})
    assert r.status_code == 422 and "tiny" in r.json()["error"]["message"]


def test_box_cannot_see_host_processes_data_dir_or_other_boxes(plan_server):
    s = plan_server
    a = s.wait_state(s.create({"name": "a", "setup_commands": ["echo top-secret-a > /workspace/secret"]})["id"])
    b = s.wait_state(s.create({"name": "b"})["id"])
    assert a["state"] == b["state"] == "ready"
    # processes: only the box's own (init + the exec'd shell and its children)
    ps = s.exec_in_box(b["id"], "ls /proc | grep -c '^[0-9]'").stdout.strip()
    assert int(ps) < 10, ps
    assert s.exec_in_box(b["id"], f"cat /proc/{s.proc.pid}/cmdline").returncode != 0
    assert s.exec_in_box(b["id"], "cat /proc/1/cmdline | tr '\\0' ' '").stdout.startswith("/.devbox/init")
    # the service's data directory (database, keys, other boxes) is not visible
    r = s.exec_in_box(b["id"], f"cat {s.data_dir}/devbox.sqlite {s.data_dir}/encryption.key 2>&1; ls {s.data_dir}/boxes 2>&1")
    assert "SQLite" not in r.stdout and "dbx_" not in r.stdout
    key = open(os.path.join(s.data_dir, "encryption.key")).read().strip()
    # (the system trees /usr, /lib, /bin, /sbin come read-only from the base image)
    grep = "grep -r -s -l {} / " + " ".join(f"--exclude-dir={d}" for d in
                                            ["proc", "sys", "dev", "usr", "lib", "lib64", "bin", "sbin", "boot"])
    assert key not in s.exec_in_box(b["id"], grep.format(f"'{key}'") + " 2>/dev/null | head -1; echo").stdout
    # another box's workspace
    r = s.exec_in_box(b["id"], grep.format("top-secret-a") + " 2>/dev/null | head -1; echo")
    assert "top-secret-a" not in r.stdout
    # host secrets
    host_shadow = hashlib.sha256(open("/etc/shadow", "rb").read()).hexdigest()
    r = s.exec_in_box(b["id"], "sha256sum /etc/shadow 2>/dev/null | cut -d' ' -f1")
    assert r.stdout.strip() != host_shadow
    assert s.exec_in_box(b["id"], "cat /etc/ssh/ssh_host_ed25519_key 2>/dev/null").stdout == ""
    # but the box works as a dev machine: its own writable root and workspace
    assert s.exec_in_box(b["id"], "echo hi > /root/x && cat /root/x && touch /usr/local/bin/y && git --version >/dev/null && echo ok").stdout == "hi\nok\n"
