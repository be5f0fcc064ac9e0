"""AI credential injection with minimal retention (issue 3)."""
import hashlib
import os
import signal
import sqlite3
import subprocess
import time

import pytest
from cryptography.fernet import Fernet

from devbox_harness import Server
from secret_scan import data_dir_files, scan_files


def tokens():
    return ("sk-ant-test-" + os.urandom(24).hex(), "sk-codex-test-" + os.urandom(24).hex())


def key_of(s: Server) -> bytes:
    k = s.extra_env.get("DEVBOX_ENCRYPTION_KEY")
    if k:
        return k.split(",")[0].encode()
    return open(os.path.join(s.data_dir, "encryption.key"), "rb").read().strip()


def assert_no_copy(s: Server, secrets: list[str]):
    key = key_of(s)
    for sec in secrets:
        found = scan_files(data_dir_files(s.data_dir) + [s.log_path], sec.encode(), [key])
        assert not found, f"secret found: {found}"


INJECT = {"inject_claude_token": True, "inject_codex_token": True}


def create_with_tokens(s: Server, claude: str, codex: str, body: dict) -> dict:
    return s.create({"credential_profile": INJECT, **body},
                    headers={"X-Claude-Token": claude, "X-Codex-Token": codex})


def test_tokens_reach_the_box_and_leave_no_trace(fresh_server):
    s = fresh_server().start()
    claude, codex = tokens()
    d = create_with_tokens(s, claude, codex, {
        "name": "inject",
        "setup_commands": ["printf %s \"$ANTHROPIC_API_KEY\" | sha256sum | cut -d' ' -f1 > /workspace/claude.sha",
                           "printf %s \"$OPENAI_API_KEY\" | sha256sum | cut -d' ' -f1 > /workspace/codex.sha"]})
    assert claude not in str(d) and codex not in str(d)
    d = s.wait_state(d["id"])
    assert d["state"] == "ready", s.operations(d["id"])
    box_dir = os.path.join(s.data_dir, "boxes", s.box_name(d["id"]))
    # (on the box's disk, <box>/disk/workspace, since disk quotas)
    ws = next(p for p in [os.path.join(box_dir, "disk", "workspace"), os.path.join(box_dir, "workspace")] if os.path.isdir(p))
    shas = subprocess.run(["sh", "-c", f"cat {ws}/claude.sha {ws}/codex.sha"],
                          capture_output=True, text=True).stdout.split()
    assert shas == [hashlib.sha256(claude.encode()).hexdigest(), hashlib.sha256(codex.encode()).hexdigest()]
    ops = s.operations(d["id"])
    inj = [o for o in ops if o["name"] == "inject_credentials"][0]
    assert inj["status"] == "succeeded" and "ANTHROPIC_API_KEY" in inj["output"]
    everything = str(ops) + str(s.request("GET", "/api/v1/devboxes").json()) + str(s.get(d["id"]))
    assert claude not in everything and codex not in everything
    with sqlite3.connect(os.path.join(s.data_dir, "devbox.sqlite")) as db:
        assert db.execute("SELECT count(*) FROM devbox_pending_secrets").fetchone()[0] == 0
    assert_no_copy(s, [claude, codex])
    # header names appear redacted in the debug request log
    assert "x-claude-token=[redacted]" in s.log()


def test_failed_devbox_leaves_no_token(fresh_server):
    s = fresh_server().start()
    claude, codex = tokens()
    d = create_with_tokens(s, claude, codex, {"name": "fails", "setup_commands": ["exit 1"]})
    d = s.wait_state(d["id"])
    assert d["state"] == "failed"
    assert_no_copy(s, [claude, codex])


def test_destroyed_before_ready_leaves_no_token(fresh_server):
    s = fresh_server().start()
    claude, codex = tokens()
    d = create_with_tokens(s, claude, codex, {"name": "gone", "setup_commands": ["sleep 20"]})
    time.sleep(1)
    assert s.request("DELETE", f"/api/v1/devboxes/{d['id']}").status_code == 204
    assert s.get(d["id"])["state"] == "destroyed"
    assert_no_copy(s, [claude, codex])


def test_header_without_flag_is_not_stored_and_flag_without_header_is_422(fresh_server):
    s = fresh_server().start()
    claude, _ = tokens()
    d = s.create({"name": "noflag", "setup_commands": ["sleep 3"]}, headers={"X-Claude-Token": claude})
    with sqlite3.connect(os.path.join(s.data_dir, "devbox.sqlite")) as db:
        assert db.execute("SELECT count(*) FROM devbox_pending_secrets").fetchone()[0] == 0
    r = s.request("POST", "/api/v1/devboxes", json_body={"name": "x", "credential_profile": {"inject_claude_token": True}})
    assert r.status_code == 422 and r.json()["error"]["field"] == "X-Claude-Token"
    s.wait_state(d["id"])
    assert_no_copy(s, [claude])


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_restart_during_provisioning_keeps_the_promise(fresh_server, sig):
    s = fresh_server().start()
    claude, codex = tokens()
    d = create_with_tokens(s, claude, codex, {"name": "restart", "setup_commands": ["sleep 3", "true"]})
    deadline = time.time() + 30
    while time.time() < deadline:
        ops = {o["name"]: o["status"] for o in s.operations(d["id"])}
        if ops["run_setup_commands"] == "running":
            break
        time.sleep(0.05)
    s.stop(sig)
    s2 = fresh_server(data_dir=s.data_dir, token=s.token)
    s2.log_path = s.log_path
    s2.start()
    d = s2.wait_state(d["id"], timeout=60)
    # kill -9 interrupts the setup step (not idempotent → failed with a clear error);
    # SIGTERM lets the step finish and the restarted service completes the pipeline.
    if sig == signal.SIGKILL:
        assert d["state"] == "failed" and "restart" in d["error"]["message"], d
    else:
        assert d["state"] == "ready", s2.operations(d["id"])
    assert_no_copy(s2, [claude, codex])
    s2.delete_all()


def test_malformed_encryption_key_refuses_to_start_with_one_line(tmp_path):
    s = Server(data_dir=str(tmp_path / "data"), env={"DEVBOX_ENCRYPTION_KEY": "not-a-key"})
    os.makedirs(s.data_dir)
    s.token = s.create_token()
    p = subprocess.run([__import__("devbox_harness").BIN, "serve", "--data-dir", s.data_dir, "--http",
                        f"127.0.0.1:{s.http_port}", "--ssh", f"127.0.0.1:{s.ssh_port}"],
                       capture_output=True, text=True, env=s.env(), timeout=30)
    assert p.returncode != 0
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, p.stderr
    assert "DEVBOX_ENCRYPTION_KEY" in lines[0] and "Fernet" in lines[0]
    assert "not-a-key" not in p.stderr


def test_key_file_is_generated_0600(fresh_server):
    s = fresh_server().start()
    st = os.stat(os.path.join(s.data_dir, "encryption.key"))
    assert st.st_mode & 0o777 == 0o600


def test_keys_rotate_reencrypts_with_the_first_key(fresh_server):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    s = fresh_server(env={"DEVBOX_ENCRYPTION_KEY": old}).start()
    d = s.create({"name": "rot", "env": {"FOO": "rotate-me"}, "setup_commands": ["test \"$FOO\" = rotate-me"]})
    assert s.wait_state(d["id"])["state"] == "ready"
    s.stop()
    out = s.cli("keys", "rotate", "--data-dir", s.data_dir, env={"DEVBOX_ENCRYPTION_KEY": f"{new},{old}"}).stdout
    assert "re-encrypted 1 secret" in out
    with sqlite3.connect(os.path.join(s.data_dir, "devbox.sqlite")) as db:
        values = [r[0] for r in db.execute("SELECT value_encrypted FROM devbox_env")]
    assert values and all(Fernet(new.encode()).decrypt(v.encode()) == b"rotate-me" for v in values)
    # a second rotation has nothing left to do
    out = s.cli("keys", "rotate", "--data-dir", s.data_dir, env={"DEVBOX_ENCRYPTION_KEY": f"{new},{old}"}).stdout
    assert "re-encrypted 0 secrets" in out
    # the old key can go: the service starts with the new key alone and provisions
    s2 = fresh_server(data_dir=s.data_dir, token=s.token, env={"DEVBOX_ENCRYPTION_KEY": new}).start()
    d2 = s2.create({"name": "after", "env": {"BAR": "x"}, "setup_commands": ["test \"$BAR\" = x"]})
    assert s2.wait_state(d2["id"])["state"] == "ready"


def test_data_dir_and_database_are_private_whatever_the_umask(tmp_path):
    """Issue 18: the data dir is 0700, the database and its -wal/-shm 0600, under umask 000
    and for a data dir made world-readable beforehand."""
    import stat
    from devbox_harness import BIN, Server
    data = tmp_path / "data"
    data.mkdir(mode=0o777)
    os.chmod(data, 0o777)
    s = Server(data_dir=str(data))
    token = s.create_token()
    s.token = token
    old = os.umask(0)
    try:
        s.start()
    finally:
        os.umask(old)
    try:
        s.create({"name": "perm"})
        mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)
        assert mode(data) == 0o700
        for f in ("devbox.sqlite", "devbox.sqlite-wal", "devbox.sqlite-shm"):
            assert mode(data / f) == 0o600, f
    finally:
        s.close()
