"""GET /api/v1/devboxes/:id/wait: a long-poll that answers when the devbox settles (server-side
change notifications, no client polling), on its timeout, on client disconnect and on shutdown."""
import re
import signal
import socket
import threading
import time

import jwt
import pytest

from devbox_harness import Server

SECRET = "e2e-wait-jwt-secret-0123456789abcdef01"


@pytest.fixture(scope="module")
def wserver():
    s = Server(env={"DEVBOX_USER_JWT_SECRET": SECRET}).start()
    yield s
    s.close()


def bearer(sub: str) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


def wait(s: Server, devbox_id: str, timeout_seconds=None, bearer: str | None = None):
    path = f"/api/v1/devboxes/{devbox_id}/wait"
    if timeout_seconds is not None:
        path += f"?timeout_seconds={timeout_seconds}"
    # The HTTP timeout only keeps a broken server from hanging the test run.
    return s.request("GET", path, bearer=bearer, timeout=330)


def err(r) -> dict:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    return body["error"]


def test_wait_returns_when_ready(wserver):
    d = wserver.create({"name": "wait-ready", "setup_commands": ["sleep 2"]})
    assert d["state"] == "requested"
    r = wait(wserver, d["id"], 120)
    assert r.status_code == 200, r.text
    box = r.json()
    assert box["state"] == "ready"
    assert box["ready_at"] is not None
    # The same object GET answers.
    got = wserver.get(d["id"])
    assert set(box) == set(got)
    assert (box["id"], box["state"], box["ready_at"]) == (got["id"], got["state"], got["ready_at"])
    setup = [o for o in wserver.operations(d["id"]) if o["name"] == "run_setup_commands"][0]
    assert setup["status"] == "succeeded"
    # A settled devbox answers at once, whatever the timeout.
    assert wait(wserver, d["id"], 300).json()["state"] == "ready"
    assert wserver.request("DELETE", f"/api/v1/devboxes/{d['id']}").status_code == 204


def test_wait_times_out_with_the_current_state(wserver):
    d = wserver.create({"name": "wait-timeout", "setup_commands": ["sleep 30"]})
    wserver.wait_state(d["id"], states=("provisioning",))
    t0 = time.monotonic()
    r = wait(wserver, d["id"], 1)
    elapsed = time.monotonic() - t0
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "provisioning"
    assert elapsed >= 1.0
    # timeout_seconds=0 answers at once with the state as it is.
    assert wait(wserver, d["id"], 0).json()["state"] == "provisioning"
    assert wserver.request("DELETE", f"/api/v1/devboxes/{d['id']}").status_code == 204


def test_delete_during_a_wait_returns_destroyed(wserver):
    d = wserver.create({"name": "wait-delete", "setup_commands": ["sleep 30"]})
    wserver.wait_state(d["id"], states=("provisioning",))
    answer = {}

    def waiter():
        answer["r"] = wait(wserver, d["id"], 120)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(1)  # the wait is open (if not yet, it answers destroyed on arrival: same assertion)
    assert t.is_alive()
    assert wserver.request("DELETE", f"/api/v1/devboxes/{d['id']}").status_code == 204
    t.join(150)
    r = answer["r"]
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "destroyed"


def test_failed_setup_returns_failed(wserver):
    d = wserver.create({"name": "wait-fail", "setup_commands": ["exit 3"]})
    r = wait(wserver, d["id"], 120)
    assert r.status_code == 200, r.text
    box = r.json()
    assert box["state"] == "failed"
    assert box["error"]["operation"] == "run_setup_commands"
    assert wserver.request("DELETE", f"/api/v1/devboxes/{d['id']}").status_code == 204


def test_another_users_devbox_is_404(wserver):
    alice, bob = bearer("alice"), bearer("bob")
    d = wserver.create({"name": "alices-wait"}, bearer=alice)
    for who in (bob, None):  # another user; the provider's own service user
        r = wait(wserver, d["id"], 1, bearer=who)
        assert r.status_code == 404, r.text
        assert err(r)["code"] == "not_found"
    unknown = wait(wserver, "dbx_doesnotexist0000000", 1, bearer=alice)
    assert unknown.status_code == 404 and err(unknown)["code"] == "not_found"
    assert wserver.request("GET", f"/api/v1/devboxes/{d['id']}/wait", token="dbx_pt_wrong").status_code == 401
    assert wserver.request("DELETE", f"/api/v1/devboxes/{d['id']}", bearer=alice).status_code == 204


@pytest.mark.parametrize("value", ["-1", "301", "abc", "1.5", ""])
def test_bad_timeout_is_422_naming_the_field(wserver, value):
    d = wserver.create({"name": "wait-422"})
    r = wait(wserver, d["id"], value)
    assert r.status_code == 422, r.text
    e = err(r)
    assert e["field"] == "timeout_seconds" and e["code"] == "validation_failed" and e["message"]
    assert wserver.request("DELETE", f"/api/v1/devboxes/{d['id']}").status_code == 204


def wait_log_lines(s: Server, devbox_id: str) -> list[str]:
    return [l for l in s.log().splitlines() if "devbox wait ended" in l and devbox_id in l]


def test_client_disconnect_ends_the_wait(wserver):
    d = wserver.create({"name": "wait-gone", "setup_commands": ["sleep 30"]})
    wserver.wait_state(d["id"], states=("provisioning",))
    with socket.create_connection(("127.0.0.1", wserver.http_port)) as c:
        c.sendall((f"GET /api/v1/devboxes/{d['id']}/wait?timeout_seconds=300 HTTP/1.1\r\n"
                   f"Host: 127.0.0.1\r\nX-Provider-Token: {wserver.token}\r\n\r\n").encode())
        time.sleep(1)
        c.settimeout(0.2)
        with pytest.raises(socket.timeout):
            c.recv(1)  # still waiting: no answer yet
    # The server notices the closed connection and ends the wait (it logs how each wait ended).
    deadline = time.time() + 60
    while time.time() < deadline and not wait_log_lines(wserver, d["id"]):
        time.sleep(0.1)
    lines = wait_log_lines(wserver, d["id"])
    assert len(lines) == 1, lines
    assert re.search(r"ending=cancelled", lines[0]), lines[0]
    assert wserver.request("DELETE", f"/api/v1/devboxes/{d['id']}").status_code == 204


def test_shutdown_is_not_held_by_an_open_wait(fresh_server):
    """SIGTERM ends open waits (they answer the devbox as it is) instead of draining them for 300 s."""
    s = fresh_server().start()
    d = s.create({"name": "wait-shutdown", "setup_commands": ["sleep 8"]})
    s.wait_state(d["id"], states=("provisioning",))
    answer = {}

    def waiter():
        try:
            answer["r"] = wait(s, d["id"], 300)
        except Exception as e:  # noqa: BLE001 - reported below
            answer["error"] = e

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(1)
    assert t.is_alive()
    s.proc.send_signal(signal.SIGTERM)
    # Far below the wait's 300 s: only a hang would reach it.
    t.join(60)
    assert not t.is_alive(), "the wait was not ended by the shutdown"
    assert "error" not in answer, answer.get("error")
    r = answer["r"]
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "provisioning"
    assert s.proc.wait(60) == 0  # the worker finishes the step in flight, then the process exits
    s.start()  # so the fixture can destroy the devbox
