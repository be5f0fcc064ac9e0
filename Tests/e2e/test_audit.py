"""The audit log (issue 24): every state-changing action of the REST API, MCP and the dashboard
is recorded once, in the service layer, with who (provider token id, user), what, which devbox,
the result, when, the source address and the request id; `GET /api/v1/audit` reads it (a
provider its own events, a user only theirs); `DEVBOX_AUDIT_LOG=stderr` copies it as JSON lines.
Never a secret in it. X-Request-Id is echoed (or made) on every answer."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import tempfile
import time

import anyio
import jwt
import pytest
import requests
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from dashboard_browser import form_token, sign_in_requests
from devbox_harness import Server
from secret_scan import find

JWT_SECRET = "e2e-audit-jwt-secret-0123456789abcdef"
ENV_SECRET = "audit-env-secret-" + os.urandom(12).hex()
CLAUDE_SECRET = "sk-ant-audit-" + os.urandom(16).hex()
CMD_SECRET = "audit-cmd-secret-" + os.urandom(12).hex()
STDIN_SECRET = "audit-stdin-secret-" + os.urandom(12).hex()
FILE_SECRET = "audit-file-secret-" + os.urandom(12).hex()
SECRETS = [ENV_SECRET, CLAUDE_SECRET, CMD_SECRET, STDIN_SECRET, FILE_SECRET, JWT_SECRET]


@pytest.fixture(scope="module")
def audit_server():
    s = Server(env={"DEVBOX_USER_JWT_SECRET": JWT_SECRET, "DEVBOX_AUDIT_LOG": "stderr", "DEVBOX_WARM_POOL": "1",
                    "DEVBOX_DESTROYED_RETENTION": "1", "DEVBOX_LIFETIME_CHECK_SECONDS": "1",
                    "DEVBOX_LIFETIME_MIN_SECONDS": "1"}).start()
    yield s
    s.close()


def bearer(sub: str) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256")


def token_id(s: Server) -> str:
    rows = [l.split("\t") for l in s.cli("token", "list", "--data-dir", s.data_dir).stdout.splitlines()]
    active = [r[0] for r in rows if r[-1] == "active"]
    assert len(active) == 1, rows
    return active[0]


def audit(s: Server, bearer_token: str | None = None, **params) -> list[dict]:
    r = requests.get(s.base + "/api/v1/audit", params=params, headers=s.headers(bearer=bearer_token), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["events"]


def one(events: list[dict], **match) -> dict:
    got = [e for e in events if all(e.get(k) == v for k, v in match.items())]
    assert len(got) == 1, (match, [(e["action"], e["face"], e["devbox_id"], e["result"]) for e in events])
    return got[0]


def keygen(keep_dir: str | None = None) -> str:
    d = keep_dir or tempfile.mkdtemp()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d + "/key"], check=True)
    pub = open(d + "/key.pub").read().strip()
    if keep_dir is None:
        subprocess.run(["rm", "-rf", d], check=True)
    return pub


def test_rest_actions_are_audited_with_who_what_result_and_source(audit_server):
    s = audit_server
    tok = token_id(s)
    me = s.request("GET", "/api/v1/users/me").json()["id"]
    rid = "e2e-create-" + os.urandom(4).hex()
    r = s.request("POST", "/api/v1/devboxes", json_body={
        "name": "audited", "env": {"SECRET_VALUE": ENV_SECRET}, "credential_profile": {"inject_claude_token": True}},
        headers={"X-Claude-Token": CLAUDE_SECRET, "X-Request-Id": rid})
    assert r.status_code == 202, r.text
    assert r.headers["X-Request-Id"] == rid
    box = s.wait_state(r.json()["id"])
    assert box["state"] == "ready", box
    bid = box["id"]
    r = s.request("POST", f"/api/v1/devboxes/{bid}/exec",
                  json_body={"command": f"echo {CMD_SECRET} $SECRET_VALUE; cat", "stdin": STDIN_SECRET})
    assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text
    r = s.request("PUT", f"/api/v1/devboxes/{bid}/files?path=%2Fworkspace%2Fnote", data=FILE_SECRET.encode())
    assert r.status_code in (200, 201), r.text
    keydir = tempfile.mkdtemp()
    assert s.request("PUT", "/api/v1/users/me/ssh-key", json_body={"public_key": keygen(keydir)}).status_code == 204
    r = s.request("POST", f"/api/v1/devboxes/{bid}/access/session", json_body={})
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    ssh = subprocess.run(["ssh", "-i", keydir + "/key", "-p", str(s.ssh_port), "-o", "StrictHostKeyChecking=no",
                          "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                          f"{sid}@127.0.0.1", "true"], capture_output=True, text=True, timeout=60)
    subprocess.run(["rm", "-rf", keydir], check=True)
    assert ssh.returncode == 0, ssh.stderr
    assert s.request("DELETE", f"/api/v1/devboxes/{bid}/access/session/{sid}").status_code == 204
    assert s.request("POST", f"/api/v1/devboxes/{bid}/stop").status_code == 200
    assert s.request("POST", f"/api/v1/devboxes/{bid}/start").status_code == 200
    assert s.request("DELETE", f"/api/v1/devboxes/{bid}").status_code == 204
    # refused actions are recorded with their result
    assert s.request("DELETE", "/api/v1/devboxes/dbx_doesnotexist").status_code == 404
    assert s.request("POST", "/api/v1/devboxes", json_body={"name": ""}).status_code == 422

    events = audit(s, devbox_id=bid)
    create = one(events, action="devbox.create")
    assert create["face"] == "api" and create["result"] == "ok" and create["provider_token_id"] == tok
    assert create["user_id"] == me and create["source"] == "127.0.0.1" and create["request_id"] == rid
    assert sorted(create["detail"]["fields"]) == ["credential_profile", "env", "name"]
    assert create["detail"]["plan"] == "small"
    assert abs(time.time() - _epoch(create["time"])) < 300
    ex = one(events, action="devbox.exec")
    assert ex["result"] == "ok" and ex["detail"]["exit_code"] == 0 and "stdin" in ex["detail"]["fields"]
    assert one(events, action="file.write")["target"] == "/workspace/note"
    assert one(events, action="session.create")["detail"]["session_id"] == sid
    assert one(events, action="session.revoke")["target"] == sid
    login = one(events, action="ssh.login")
    assert login["face"] == "ssh" and login["target"] == sid and login["user_id"] == me and login["result"] == "ok"
    for a in ("devbox.stop", "devbox.start", "devbox.delete"):
        e = one(events, action=a)
        assert e["result"] == "ok" and e["face"] == "api" and e["user_id"] == me, e
    # every request id is distinct, newest first
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)
    missing = one(audit(s, devbox_id="dbx_doesnotexist"), action="devbox.delete")
    assert missing["result"] == "not_found"
    bad = [e for e in audit(s, action="devbox.create") if e["result"] != "ok"]
    assert bad and bad[0]["result"] == "validation_failed" and bad[0]["detail"]["field"] == "name"
    assert one(audit(s, action="user.ssh_key.set"), result="ok")["devbox_id"] is None

    # The events outlive the purge of the destroyed devbox (DEVBOX_DESTROYED_RETENTION=1).
    deadline = time.time() + 30
    while s.request("GET", f"/api/v1/devboxes/{bid}").status_code != 404:
        assert time.time() < deadline, "the destroyed devbox was never purged"
        time.sleep(0.5)
    assert len(audit(s, devbox_id=bid)) == len(events)


def _epoch(rfc3339: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


async def _mcp_actions(s: Server) -> str:
    async with create_mcp_http_client(headers={"X-Provider-Token": s.token, "X-Request-Id": "e2e-mcp"}) as http:
        async with Client(streamable_http_client(s.base + "/mcp", http_client=http), mode="auto") as c:
            r = await c.call_tool("create_devbox", {"name": "mcp-audited", "env": {"SECRET_VALUE": ENV_SECRET}})
            assert not r.is_error, r.content
            bid = r.structured_content["devbox"]["id"]
            r = await c.call_tool("wait_for_ready", {"devbox_id": bid, "timeout_seconds": 120})
            assert not r.is_error, r.content
            r = await c.call_tool("run_command", {"devbox_id": bid, "command": f"echo {CMD_SECRET}"})
            assert not r.is_error, r.content
            r = await c.call_tool("delete_devbox", {"devbox_id": bid})
            assert not r.is_error, r.content
            return bid


def test_mcp_actions_are_audited_as_mcp(audit_server):
    s = audit_server
    bid = anyio.run(_mcp_actions, s)
    events = audit(s, devbox_id=bid)
    for a in ("devbox.create", "devbox.exec", "devbox.delete"):
        e = one(events, action=a)
        assert e["face"] == "mcp" and e["result"] == "ok" and e["source"] == "127.0.0.1", e
        assert e["provider_token_id"] == token_id(s) and e["request_id"] == "e2e-mcp"


def test_dashboard_actions_are_audited_as_dashboard(audit_server):
    s = audit_server
    http = sign_in_requests(s.base, s.token)
    token = form_token(http.get(s.base + "/devboxes/new", timeout=10).text)
    r = http.post(s.base + "/devboxes", data={"name": "dash-audited", "csrf_token": token}, headers={"Origin": s.base},
                  allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text
    bid = r.headers["Location"].split("/")[2].split("?")[0]
    r = http.post(s.base + f"/devboxes/{bid}/destroy", data={"csrf_token": token, "confirm": "on"},
                  headers={"Origin": s.base}, allow_redirects=False, timeout=30)
    assert r.status_code == 303
    events = audit(s, devbox_id=bid)
    for a in ("devbox.create", "devbox.delete"):
        e = one(events, action=a)
        assert e["face"] == "dashboard" and e["result"] == "ok" and e["provider_token_id"] == token_id(s), e
    assert any(e["face"] == "dashboard" for e in audit(s, action="dashboard.sign_in"))


def test_a_user_sees_only_their_own_events_and_the_provider_sees_all(audit_server):
    s = audit_server
    alice, bob = bearer("alice-audit"), bearer("bob-audit")
    for who in (alice, bob):
        assert s.request("PUT", "/api/v1/users/me/ssh-key", json_body={"public_key": keygen()},
                         bearer=who).status_code == 204
    alice_id = s.request("GET", "/api/v1/users/me", bearer=alice).json()["id"]
    bob_id = s.request("GET", "/api/v1/users/me", bearer=bob).json()["id"]
    mine = audit(s, alice)
    assert mine and {e["user_id"] for e in mine} == {alice_id}
    assert {e["user_id"] for e in audit(s, bob)} == {bob_id}
    everyone = {e["user_id"] for e in audit(s, limit=500)}
    assert {alice_id, bob_id} <= everyone
    # Another provider sees none of them.
    other = s.create_token("other-provider")
    r = requests.get(s.base + "/api/v1/audit", headers={"X-Provider-Token": other}, timeout=30)
    assert r.status_code == 200 and r.json()["events"] == []
    assert requests.get(s.base + "/api/v1/audit", timeout=30).status_code == 401


def test_pages_filters_and_bad_parameters(audit_server):
    s = audit_server
    for _ in range(3):
        assert s.request("DELETE", "/api/v1/users/me/ssh-key").status_code == 204
    assert s.request("DELETE", "/api/v1/devboxes/dbx_pagesprobe").status_code == 404
    all_events = audit(s, limit=500)
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = s.request("GET", "/api/v1/audit?" + "&".join(f"{k}={v}" for k, v in params.items()))
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["events"]) <= 2
        seen += page["events"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["id"] for e in seen][:len(all_events)] == [e["id"] for e in all_events][:len(seen)]
    assert {e["action"].split(".")[0] for e in audit(s, action="devbox")} == {"devbox"}
    assert len(audit(s, action="user.ssh_key.delete")) >= 3
    future = "2999-01-01T00:00:00Z"
    assert audit(s, since=future) == []
    for q, field in (("limit=0", "limit"), ("limit=x", "limit"), ("cursor=abc", "cursor"), ("since=yesterday", "since"),
                     ("action=drop%20table", "action")):
        r = s.request("GET", "/api/v1/audit?" + q)
        assert r.status_code == 422, (q, r.text)
        assert r.json()["error"]["field"] == field


def test_request_ids_are_echoed_or_made_on_every_answer(audit_server):
    s = audit_server
    for path, kw in (("/healthz", {}), ("/api/v1/devboxes", {}), ("/api/v1/devboxes/dbx_nope", {}),
                     ("/no/such/route", {})):
        r = requests.get(s.base + path, headers={**s.headers(), "X-Request-Id": "abc-123"}, timeout=10)
        assert r.headers.get("X-Request-Id") == "abc-123", (path, r.status_code, r.headers)
    r = requests.get(s.base + "/api/v1/devboxes", timeout=10)  # 401
    assert r.status_code == 401 and len(r.headers["X-Request-Id"]) == 32
    for bad in ("x" * 200, "has space", "semi;colon", "ünï"):
        r = requests.get(s.base + "/healthz", headers={"X-Request-Id": bad.encode().decode("latin-1")}, timeout=10)
        got = r.headers["X-Request-Id"]
        assert got != bad and len(got) == 32 and all(c in "0123456789abcdef" for c in got)
    a = requests.get(s.base + "/healthz", timeout=10).headers["X-Request-Id"]
    b = requests.get(s.base + "/healthz", timeout=10).headers["X-Request-Id"]
    assert a != b
    # the request's log lines carry it
    rid = "e2e-logline-" + os.urandom(3).hex()
    s.request("GET", "/api/v1/devboxes", headers={"X-Request-Id": rid})
    time.sleep(0.3)
    assert rid in s.log()


def test_no_secret_in_the_audit_table_or_its_stderr_copy(audit_server):
    s = audit_server
    # stderr copy: one JSON object per audit event
    lines = [json.loads(l) for l in s.log().splitlines() if l.startswith('{') and '"type":"audit"' in l]
    assert lines, "no audit lines on stderr"
    for l in lines:
        assert l["type"] == "audit" and l["action"] and l["result"] and "time" in l
    assert {"devbox.create", "devbox.exec", "devbox.delete", "session.create"} <= {l["action"] for l in lines}
    db = sqlite3.connect(f"file:{s.data_dir}/devbox.sqlite?mode=ro", uri=True)
    rows = db.execute("SELECT * FROM audit_events").fetchall()
    db.close()
    assert len(rows) >= 20
    table = repr(rows).encode()
    log = s.log().encode()
    for secret in SECRETS:
        assert find(table, secret.encode(), []) == [], secret
        assert find(log, secret.encode(), []) == [], secret
    assert s.token.encode() not in table and s.token.encode() not in log


def test_the_services_own_actions_are_audited_as_system(audit_server):
    s = audit_server
    me = s.request("GET", "/api/v1/users/me").json()["id"]
    d = s.create({"name": "short-lived", "ttl_seconds": 2})
    deadline = time.time() + 60
    while not any(e["action"] == "devbox.expire" for e in audit(s, devbox_id=d["id"])):
        assert time.time() < deadline, "no devbox.expire event"
        time.sleep(0.5)
    e = one(audit(s, devbox_id=d["id"]), action="devbox.expire")
    assert e["face"] == "system" and e["provider_token_id"] is None and e["user_id"] == me and e["source"] is None


def test_audit_retention_drops_old_events(fresh_server):
    s = fresh_server(env={"DEVBOX_AUDIT_RETENTION": "2", "DEVBOX_LIFETIME_CHECK_SECONDS": "1",
                          "DEVBOX_WARM_POOL": "0"}).start()
    assert s.request("DELETE", "/api/v1/users/me/ssh-key").status_code == 204
    assert len(audit(s)) == 1
    deadline = time.time() + 20
    while audit(s):
        assert time.time() < deadline, "audit events were never purged"
        time.sleep(0.5)


def test_cli_and_sdk_read_the_audit_log(audit_server):
    s = audit_server
    assert s.request("DELETE", "/api/v1/devboxes/dbx_cliprobe").status_code == 404
    env = {"DEVBOX_URL": s.base, "DEVBOX_PROVIDER_TOKEN": s.token}
    out = s.cli("audit", "--devbox", "dbx_cliprobe", env=env).stdout
    assert "devbox.delete" in out and "not_found" in out and "dbx_cliprobe" in out, out
    raw = json.loads(s.cli("audit", "--action", "devbox.delete", "--limit", "5", "--json", env=env).stdout)
    assert raw["events"] and all(e["action"] == "devbox.delete" for e in raw["events"])
    bad = s.cli("audit", "--since", "yesterday", env=env, check=False)
    assert bad.returncode != 0 and "--since" in bad.stderr
