"""Running devbox as an operator would (issue 24): JSON log lines, sd_notify READY/STOPPING to a
socket the test provides, the systemd unit checked by `systemd-analyze verify`, and backup/restore
(a backup taken during a burst of creates restores consistently into a fresh data dir)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

from devbox_harness import BIN, Server, free_port
from secret_scan import find

ROOT = Path(__file__).resolve().parents[2]


# -- logs ---------------------------------------------------------------------------------------

def test_json_log_format_is_one_object_per_line_with_request_and_devbox_ids(fresh_server):
    s = fresh_server(env={"DEVBOX_LOG_FORMAT": "json", "DEVBOX_WARM_POOL": "0"}).start()
    rid = "e2e-json-" + os.urandom(4).hex()
    r = s.request("POST", "/api/v1/devboxes", json_body={"name": "json-logs"}, headers={"X-Request-Id": rid})
    assert r.status_code == 202, r.text
    assert r.headers["X-Request-Id"] == rid
    bid = r.json()["id"]
    s.wait_state(bid)
    r = s.request("GET", f"/api/v1/devboxes/{bid}", headers={"X-Request-Id": rid + "-get"})
    assert r.status_code == 200
    time.sleep(0.3)
    lines = [l for l in s.log().splitlines() if l.strip()]
    assert len(lines) > 10
    objs = []
    for l in lines:
        o = json.loads(l)  # every line is one JSON object
        assert isinstance(o, dict) and {"time", "level", "message"} <= o.keys(), l
        assert o["level"] in ("trace", "debug", "info", "notice", "warning", "error", "critical")
        objs.append(o)
    mine = [o for o in objs if o.get("request_id") == rid]
    assert any(o["message"] == "devbox created" and o.get("devbox_id") == bid for o in mine), mine
    assert any(o["message"] == "request" and o.get("status") == "202" for o in mine), mine
    got = [o for o in objs if o.get("request_id") == rid + "-get"]
    assert got and all(o.get("devbox_id") == bid for o in got), got
    # lines of background work (the provisioning worker) still name their devbox
    assert any(o.get("devbox_id") == bid and "request_id" not in o for o in objs)


def test_bad_log_format_is_refused(tmp_path):
    r = subprocess.run([BIN, "serve", "--data-dir", str(tmp_path / "d"), "--http", f"127.0.0.1:{free_port()}"],
                       env={**os.environ, "DEVBOX_LOG_FORMAT": "xml"}, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "DEVBOX_LOG_FORMAT" in r.stderr


# -- sd_notify ----------------------------------------------------------------------------------

def _notify_socket(abstract: bool) -> tuple[socket.socket, str, str | None]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = "devbox-e2e-notify-" + os.urandom(6).hex()
        sock.bind("\0" + name)
        return sock, "@" + name, None
    d = tempfile.mkdtemp(prefix="devbox-notify-")
    path = os.path.join(d, "notify.sock")
    sock.bind(path)
    return sock, path, d


def _receive(sock: socket.socket, want: str, timeout: float) -> list[str]:
    got = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        sock.settimeout(max(0.05, deadline - time.time()))
        try:
            msg = sock.recv(4096).decode()
        except socket.timeout:
            break
        got.append(msg)
        if want in msg.split("\n"):
            return got
    raise AssertionError(f"no {want} from the serve; got {got}")


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_sd_notify_ready_after_listeners_and_stopping_on_sigterm(fresh_server, abstract):
    sock, address, tmpdir = _notify_socket(abstract)
    try:
        s = fresh_server(env={"NOTIFY_SOCKET": address, "DEVBOX_WARM_POOL": "0"})
        s.start(wait=False)
        got = _receive(sock, "READY=1", 60)
        # READY=1 only once the HTTP listener is bound and start-up ran: it answers at once.
        assert requests.get(s.base + "/healthz", timeout=2).status_code in (200, 503)
        ready = [m for m in got if "READY=1" in m.split("\n")][0]
        assert "STATUS=serving HTTP on 127.0.0.1:" in ready
        ssh = socket.create_connection(("127.0.0.1", s.ssh_port), timeout=2)
        ssh.close()
        assert any(m.startswith("STATUS=preparing") for m in got), got
        s.proc.send_signal(signal.SIGTERM)
        _receive(sock, "STOPPING=1", 30)
        assert s.proc.wait(timeout=30) == 0
    finally:
        sock.close()
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


# -- the systemd unit ---------------------------------------------------------------------------

def test_install_service_unit_verifies_and_matches_the_repository_copy(tmp_path):
    printed = subprocess.run([BIN, "install-service", "--print", "--binary", "/usr/local/bin/devbox"],
                             capture_output=True, text=True, check=True).stdout
    assert printed == (ROOT / "scripts" / "devbox.service").read_text(), \
        "scripts/devbox.service differs from `devbox install-service --print --binary /usr/local/bin/devbox`"
    unit = tmp_path / "devbox.service"
    r = subprocess.run([BIN, "install-service", "--binary", os.path.realpath(BIN), "--unit-file", str(unit)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "systemctl daemon-reload" in r.stdout
    text = unit.read_text()
    for line in ("Type=notify", "NotifyAccess=main", "Restart=on-failure", "KillMode=process", "Delegate=yes",
                 "StateDirectoryMode=0700", "UMask=0077", f"ExecStart={os.path.realpath(BIN)} serve --data-dir /var/lib/devbox"):
        assert line in text, line
    assert stat.S_IMODE(os.stat(unit).st_mode) == 0o644
    v = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0, v.stdout + v.stderr
    assert "devbox.service" not in v.stderr, v.stderr
    # bad options are refused
    r = subprocess.run([BIN, "install-service", "--print", "--data-dir", "/tmp/x y"], capture_output=True, text=True)
    assert r.returncode != 0 and "--data-dir" in r.stderr


# -- backup and restore -------------------------------------------------------------------------

SECRET = "backup-env-secret-" + os.urandom(12).hex()


def _burst(s: Server, n: int, out: list, stop: threading.Event):
    i = 0
    while not stop.is_set() and i < n:
        r = s.request("POST", "/api/v1/devboxes", json_body={"name": f"burst-{i}", "env": {"SECRET_VALUE": SECRET}})
        assert r.status_code == 202, r.text
        out.append(r.json()["id"])
        i += 1


def test_backup_during_a_burst_of_creates_restores_consistently(fresh_server, tmp_path):
    s = fresh_server(env={"DEVBOX_WARM_POOL": "0"}).start()
    first = s.create({"name": "before", "env": {"SECRET_VALUE": SECRET}})
    assert s.wait_state(first["id"])["state"] == "ready"
    created: list[str] = []
    stop = threading.Event()
    workers = [threading.Thread(target=_burst, args=(s, 8, created, stop)) for _ in range(3)]
    for w in workers:
        w.start()
    backups = []
    try:
        time.sleep(0.2)
        for i in range(3):
            f = tmp_path / f"b{i}.tar"
            r = subprocess.run([BIN, "backup", "--data-dir", s.data_dir, str(f)], capture_output=True, text=True,
                               timeout=60)
            assert r.returncode == 0, r.stderr
            backups.append(f)
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert created
    f = backups[-1]
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    with tarfile.open(f) as t:
        names = sorted(t.getnames())
        assert names == sorted(["MANIFEST.json", "devbox.sqlite", "encryption.key", "ssh_host_ed25519_key"]), names
        key = t.extractfile("encryption.key").read()
    blob = f.read_bytes()
    # The database holds the env value only as Fernet ciphertext: no plain (or base64) copy.
    assert find(blob, SECRET.encode(), []) == []
    assert s.token.encode() not in blob

    # Restore into a fresh data dir; it is refused into a non-empty one.
    target = tmp_path / "restored"
    r = subprocess.run([BIN, "restore", "--data-dir", str(target), str(f)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o700
    for n in ("devbox.sqlite", "encryption.key", "ssh_host_ed25519_key"):
        assert stat.S_IMODE(os.stat(target / n).st_mode) == 0o600, n
    r = subprocess.run([BIN, "restore", "--data-dir", str(target), str(f)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "not empty" in r.stderr
    r = subprocess.run([BIN, "restore", "--data-dir", s.data_dir, "--force", str(f)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0 and "serve is using" in r.stderr
    db = sqlite3.connect(str(target / "devbox.sqlite"))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ids = {row[0] for row in db.execute("SELECT id FROM devboxes")}
    # every devbox's env value decrypts with the restored key
    for (value,) in db.execute("SELECT value_encrypted FROM devbox_env"):
        assert Fernet(key.strip().split(b"\n")[0].split(b",")[0]).decrypt(value.encode()).decode() == SECRET
    db.close()
    assert first["id"] in ids and ids <= set(created) | {first["id"]}

    # A serve on the restored dir lists the same devboxes' records and runs the ready one.
    r2 = fresh_server(data_dir=str(target), token=s.token, env={"DEVBOX_WARM_POOL": "0"}).start()
    listed = {d["id"] for d in r2.request("GET", "/api/v1/devboxes").json()["devboxes"]}
    assert listed == ids
    # The records are the same (the restored serve's answer is the original's, but the state).
    a, b = s.get(first["id"]), r2.get(first["id"])
    for k in ("name", "plan", "env_keys", "created_at", "credential_profile", "setup_commands", "repositories"):
        assert a[k] == b[k], k
    # The box's files are not in a backup: the restored serve finds no sandbox for it and
    # shows it stopped (never ready without a running box), as after a reboot that lost them.
    got = r2.wait_state(first["id"], states=("ready", "stopped", "failed"))
    assert got["state"] == "stopped", got
    # New boxes work on the restored data dir.
    fresh = r2.wait_state(r2.create({"name": "after-restore"})["id"])
    assert fresh["state"] == "ready", fresh
    r2.delete_all()
    r2.stop()
    s.delete_all()


def test_restore_refuses_a_damaged_backup(tmp_path, fresh_server):
    s = fresh_server(env={"DEVBOX_WARM_POOL": "0"}).start()
    f = tmp_path / "b.tar"
    subprocess.run([BIN, "backup", "--data-dir", s.data_dir, str(f)], check=True, capture_output=True)
    data = bytearray(f.read_bytes())
    # flip a byte inside the database's content (after its 512-byte header)
    with tarfile.open(f) as t:
        m = t.getmember("devbox.sqlite")
    data[m.offset_data + 100] ^= 0xFF
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data))
    r = subprocess.run([BIN, "restore", "--data-dir", str(tmp_path / "x"), str(bad)], capture_output=True, text=True)
    assert r.returncode != 0 and "does not match its manifest" in r.stderr
    (tmp_path / "junk").write_bytes(b"not a tar" * 200)
    r = subprocess.run([BIN, "restore", "--data-dir", str(tmp_path / "y"), str(tmp_path / "junk")], capture_output=True,
                       text=True)
    assert r.returncode != 0 and "error:" in r.stderr
