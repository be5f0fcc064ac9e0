"""Env values are Fernet-encrypted at rest while a devbox may still need them, and gone from
the database files (main, -wal, -shm) once it never can: destroyed, or failed."""
import os
import time
import sqlite3

import pytest

from devbox_harness import Server
from secret_scan import data_dir_files, scan_files


@pytest.fixture(scope="module")
def server():
    s = Server(env={"DEVBOX_WARM_POOL": "0"}).start()
    yield s
    s.close()


def key_of(s: Server) -> bytes:
    return open(os.path.join(s.data_dir, "encryption.key"), "rb").read().strip()


def env_rows(s: Server, devbox_id: str) -> int:
    with sqlite3.connect(os.path.join(s.data_dir, "devbox.sqlite")) as db:
        return db.execute("SELECT count(*) FROM devbox_env WHERE devbox_id = ?", (devbox_id,)).fetchone()[0]


def found(s: Server, value: str) -> dict:
    """Copies of the value in the database files and the log: plain, base64 or inside a
    Fernet token the service's key decrypts."""
    return scan_files(data_dir_files(s.data_dir) + [s.log_path], value.encode(), [key_of(s)])


@pytest.mark.parametrize("how", ["destroyed", "failed"])
def test_env_values_leave_the_database_files(server, how):
    value = "env-secret-" + os.urandom(24).hex()
    body = {"name": f"env-{how}", "env": {"DB_PASSWORD": value, "OTHER": "x"},
            "setup_commands": ["true" if how == "destroyed" else "exit 3"]}
    d = server.wait_state(server.create(body)["id"])
    assert d["state"] == ("ready" if how == "destroyed" else "failed"), d
    if how == "destroyed":
        # the scan sees the encrypted value while the devbox may still use it
        assert env_rows(server, d["id"]) == 2
        assert found(server, value), "the scanner should find the stored value"
        assert server.request("DELETE", f"/api/v1/devboxes/{d['id']}").status_code in (202, 204)
        assert server.get(d["id"])["state"] == "destroyed"  # DELETE answers once torn down
    # A failed devbox's teardown runs just after its state is written: give it a moment.
    deadline = time.time() + 10
    while env_rows(server, d["id"]) and time.time() < deadline:
        time.sleep(0.05)
    assert env_rows(server, d["id"]) == 0
    deadline = time.time() + 10
    while found(server, value) and time.time() < deadline:  # the WAL is truncated right after
        time.sleep(0.05)
    assert found(server, value) == {}
    assert sorted(server.get(d["id"])["env_keys"]) == ["DB_PASSWORD", "OTHER"]  # names stay, values go
