"""SSH keys on the profile and access sessions (the API side; the gateway has its own tests)."""
import os
import subprocess
import tempfile

import pytest


def keygen(kind: str, bits: int | None = None) -> tuple[str, str]:
    d = tempfile.mkdtemp()
    path = os.path.join(d, "key")
    args = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", path, "-C", "test@devbox"]
    if bits:
        args += ["-b", str(bits)]
    subprocess.run(args, check=True)
    pub = open(path + ".pub").read().strip()
    fp = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", path + ".pub"], capture_output=True, text=True,
                        check=True).stdout.split()[1]
    return pub, fp


@pytest.mark.parametrize("kind,bits,typ", [("ed25519", None, "ssh-ed25519"), ("ecdsa", 256, "ecdsa-sha2-nistp256"),
                                            ("ecdsa", 384, "ecdsa-sha2-nistp384"), ("ecdsa", 521, "ecdsa-sha2-nistp521")])
def test_supported_keys_are_stored_with_fingerprint(server, kind, bits, typ):
    pub, fp = keygen(kind, bits)
    r = server.request("PUT", "/api/v1/users/me/ssh-key", json_body={"public_key": pub})
    assert r.status_code == 204, r.text
    key = server.request("GET", "/api/v1/users/me").json()["ssh_key"]
    assert key["type"] == typ
    assert key["fingerprint"] == fp
    assert server.request("DELETE", "/api/v1/users/me/ssh-key").status_code == 204
    assert server.request("GET", "/api/v1/users/me").json()["ssh_key"] is None


@pytest.mark.parametrize("value", [
    "garbage", "", "ssh-ed25519", "ssh-ed25519 !!!notbase64!!!", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==",
    "ecdsa-sha2-nistp256 AAAAC3NzaC1lZDI1NTE5AAAAIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
    "\u0000\u0001", "ssh-ed25519 AAAA\nssh-ed25519 AAAA",
])
def test_garbage_keys_are_422(server, value):
    r = server.request("PUT", "/api/v1/users/me/ssh-key", json_body={"public_key": value})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "public_key"


def test_rsa_is_refused_with_how_to(server):
    pub, _ = keygen("rsa", 2048)
    r = server.request("PUT", "/api/v1/users/me/ssh-key", json_body={"public_key": pub})
    assert r.status_code == 422
    msg = r.json()["error"]["message"]
    assert "ssh-keygen -t ed25519" in msg and "ed25519" in msg and "ECDSA" in msg


def test_missing_public_key_field(server):
    r = server.request("PUT", "/api/v1/users/me/ssh-key", json_body={})
    assert r.status_code == 422 and r.json()["error"]["field"] == "public_key"


def test_session_needs_ready_devbox_and_a_key(server):
    d = server.create({"name": "sess", "setup_commands": ["sleep 2"]})
    r = server.request("POST", f"/api/v1/devboxes/{d['id']}/access/session")
    assert r.status_code == 409  # not ready yet
    d = server.wait_state(d["id"])
    assert d["state"] == "ready"
    server.request("DELETE", "/api/v1/users/me/ssh-key")
    r = server.request("POST", f"/api/v1/devboxes/{d['id']}/access/session")
    assert r.status_code == 409
    assert "ssh-key" in r.json()["error"]["message"]
    pub, _ = keygen("ed25519")
    assert server.request("PUT", "/api/v1/users/me/ssh-key", json_body={"public_key": pub}).status_code == 204
    r = server.request("POST", f"/api/v1/devboxes/{d['id']}/access/session", json_body={"ttl_seconds": 10})
    assert r.status_code == 422 and r.json()["error"]["field"] == "ttl_seconds"
    r = server.request("POST", f"/api/v1/devboxes/{d['id']}/access/session")
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["session_id"].startswith("ses_")
    assert s["ssh"] == {"host": "127.0.0.1", "port": server.ssh_port, "username": s["session_id"],
                        "workspace_path": "/workspace"}
    assert f"-p {server.ssh_port}" in s["command"] and f"{s['session_id']}@127.0.0.1" in s["command"]
    listed = server.request("GET", f"/api/v1/devboxes/{d['id']}/access/sessions").json()["sessions"]
    assert [x["session_id"] for x in listed] == [s["session_id"]]
    assert listed[0]["connections"] == 0
    assert server.request("DELETE", f"/api/v1/devboxes/{d['id']}/access/session/{s['session_id']}").status_code == 204
    assert server.request("GET", f"/api/v1/devboxes/{d['id']}/access/sessions").json()["sessions"] == []
    assert server.request("DELETE", f"/api/v1/devboxes/{d['id']}/access/session/{s['session_id']}").status_code == 404
    server.request("DELETE", f"/api/v1/devboxes/{d['id']}")


def test_public_ssh_address_is_configurable(fresh_server):
    s = fresh_server(env={"DEVBOX_SSH_PUBLIC_HOST": "devbox.example.test", "DEVBOX_SSH_PUBLIC_PORT": "22022"}).start()
    pub, _ = keygen("ed25519")
    s.request("PUT", "/api/v1/users/me/ssh-key", json_body={"public_key": pub})
    d = s.wait_state(s.create({"name": "nat"})["id"])
    r = s.request("POST", f"/api/v1/devboxes/{d['id']}/access/session").json()
    assert r["ssh"]["host"] == "devbox.example.test" and r["ssh"]["port"] == 22022
    assert "-p 22022" in r["command"] and "@devbox.example.test" in r["command"]
