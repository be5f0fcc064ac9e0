"""Service core over the real REST API: auth, validation, lifecycle of real crun boxes."""
import json
import time

import jwt
import pytest
import requests

from devbox_harness import Server, containers_of


def err(r: requests.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "field"}, body
    return body["error"]


# -- health, auth --------------------------------------------------------------------

def test_healthz_and_openapi_need_no_token(server):
    health = requests.get(server.base + "/healthz").json()
    assert health["status"] == "ok"
    assert set(health["warm_pool"]) == {"size", "ready"} and 0 <= health["warm_pool"]["ready"] <= health["warm_pool"]["size"]
    doc = requests.get(server.base + "/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert "/api/v1/devboxes" in doc["paths"]


@pytest.mark.parametrize("token", [None, "", "dbx_pt_wrong"])
def test_api_requires_a_valid_provider_token(server, token):
    headers = {} if token is None else {"X-Provider-Token": token}
    r = requests.get(server.base + "/api/v1/devboxes", headers=headers)
    assert r.status_code == 401
    assert err(r)["code"] == "unauthorized"


def test_revoked_token_is_refused(fresh_server):
    s = fresh_server().start()
    other = s.create_token("default")
    assert s.request("GET", "/api/v1/users/me", token=other).status_code == 200
    tid = [l.split("\t")[0] for l in s.cli("token", "list", "--data-dir", s.data_dir).stdout.splitlines()
           if l.split("\t")[2].endswith(other[-4:])][0]
    s.cli("token", "revoke", tid, "--data-dir", s.data_dir)
    assert s.request("GET", "/api/v1/users/me", token=other).status_code == 401
    assert other not in s.cli("token", "list", "--data-dir", s.data_dir).stdout


def test_unknown_route_is_json_404(server):
    r = server.request("GET", "/api/v1/nope")
    assert r.status_code == 404
    assert err(r)["code"] == "not_found"


# -- validation: each limit of the seed ------------------------------------------------

BAD_BODIES = [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "x" * 65}, "name"),
    ({"name": "bad\u0007name"}, "name"),
    ({"name": 5}, "name"),
    ({"name": "a", "plan": "huge"}, "plan"),
    ({"name": "a", "env": {"lower": "x"}}, "env.lower"),
    ({"name": "a", "env": {"9X": "x"}}, "env.9X"),
    ({"name": "a", "env": {f"K{i}": "v" for i in range(65)}}, "env"),
    ({"name": "a", "env": {"BIG": "x" * (32 * 1024 + 1)}}, "env.BIG"),
    ({"name": "a", "env": {"K": 5}}, "env.K"),
    ({"name": "a", "setup_commands": ["true"] * 33}, "setup_commands"),
    ({"name": "a", "setup_commands": ["x" * 4097]}, "setup_commands[0]"),
    ({"name": "a", "setup_commands": "true"}, "setup_commands"),
    ({"name": "a", "setup_timeout_seconds": 29}, "setup_timeout_seconds"),
    ({"name": "a", "setup_timeout_seconds": 3601}, "setup_timeout_seconds"),
    ({"name": "a", "setup_timeout_seconds": "60"}, "setup_timeout_seconds"),
    ({"name": "a", "setup_timeout_seconds": 60.5}, "setup_timeout_seconds"),
    ({"name": "a", "repositories": [{"full_name": "no-slash"}]}, "repositories[0].full_name"),
    ({"name": "a", "repositories": [{"full_name": "o/r", "target_path": "relative"}]}, "repositories[0].target_path"),
    ({"name": "a", "repositories": [{"full_name": "o/r", "target_path": "/etc/x"}]}, "repositories[0].target_path"),
    ({"name": "a", "repositories": [{"full_name": "o/r", "target_path": "/workspace/../etc"}]}, "repositories[0].target_path"),
    ({"name": "a", "repositories": [{"full_name": "o/r", "ref": "--upload-pack=x"}]}, "repositories[0].ref"),
    ({"name": "a", "repository": "not a repo"}, "repository"),
    ({"name": "a", "credential_profile": {"inject_claude_token": True}}, "X-Claude-Token"),
    ({"name": "a", "credential_profile": {"inject_codex_token": True}}, "X-Codex-Token"),
]


@pytest.mark.parametrize("body,field", BAD_BODIES, ids=[f for _, f in BAD_BODIES])
def test_invalid_create_is_422_naming_the_field(server, body, field):
    before = len(server.request("GET", "/api/v1/devboxes").json()["devboxes"])
    r = server.request("POST", "/api/v1/devboxes", json_body=body)
    assert r.status_code == 422, r.text
    e = err(r)
    assert e["field"] == field
    assert e["message"]
    assert len(server.request("GET", "/api/v1/devboxes").json()["devboxes"]) == before


def test_malformed_json_is_400(server):
    for raw in [b"{", b"not json", b"[1,2]", b""]:
        r = server.request("POST", "/api/v1/devboxes", data=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (raw, r.text)
        assert err(r)["code"] == "bad_request"


def test_body_over_the_create_cap_is_413(server):
    # The cap fits every documented maximum at once, JSON-escaped (test_body_limit.py); past it: 413.
    r = server.request("POST", "/api/v1/devboxes", data=b"{" + b" " * (15 * 1024 * 1024) + b"}",
                       headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert err(r)["code"] == "payload_too_large"


def test_defaults_and_shape(server):
    d = server.create({"name": "defaults", "env": {"FOO": "secret-value-1"}, "repository": "octo/hello"})
    assert d["state"] == "requested"
    assert d["plan"] == "small"
    assert d["setup_timeout_seconds"] == 900
    assert d["env_keys"] == ["FOO"]
    assert "secret-value-1" not in json.dumps(d)
    assert d["credential_profile"] == {"inject_claude_token": False, "inject_codex_token": False}
    assert d["repositories"][0]["ref"] == "main"  # legacy branch default
    assert d["repositories"][0]["target_path"] == "/workspace/hello"
    for k in ["id", "name", "created_at", "updated_at", "ready_at", "error"]:
        assert k in d
    server.request("DELETE", f"/api/v1/devboxes/{d['id']}")


# -- lifecycle with real boxes --------------------------------------------------------

def test_create_ready_with_setup_command_and_env(server):
    d = server.create({"name": "slice", "env": {"GREETING": "hello 'world' $HOME\nline2"},
                       "setup_commands": ["echo \"$GREETING\" > /workspace/greeting", "pwd", "echo to-stderr >&2"]})
    d = server.wait_state(d["id"])
    assert d["state"] == "ready", server.operations(d["id"])
    assert d["ready_at"] and d["error"] is None
    ops = server.operations(d["id"])
    assert [o["name"] for o in ops] == ["provision", "inject_credentials", "clone_repositories",
                                         "run_setup_commands", "publish_access"]
    status = {o["name"]: o["status"] for o in ops}
    assert status == {"provision": "succeeded", "inject_credentials": "skipped", "clone_repositories": "skipped",
                      "run_setup_commands": "succeeded", "publish_access": "succeeded"}
    setup = ops[3]
    assert "/workspace" in setup["output"] and "to-stderr" in setup["output"]
    assert setup["started_at"] and setup["finished_at"]
    assert server.exec_in_box(d["id"], "cat /workspace/greeting").stdout == "hello 'world' $HOME\nline2\n"
    r = server.request("DELETE", f"/api/v1/devboxes/{d['id']}")
    assert r.status_code == 204
    assert server.get(d["id"])["state"] == "destroyed"
    assert not containers_of(d["id"])


def test_failing_setup_command_fails_with_its_exit_code_and_tail(server):
    d = server.create({"name": "fails", "setup_commands": ["echo before", "echo oops >&2; exit 3", "echo never"]})
    d = server.wait_state(d["id"])
    assert d["state"] == "failed"
    assert d["error"]["operation"] == "run_setup_commands"
    assert "exit 3" in d["error"]["message"] and "code 3" in d["error"]["message"]
    ops = {o["name"]: o for o in server.operations(d["id"])}
    assert ops["run_setup_commands"]["status"] == "failed"
    assert "oops" in ops["run_setup_commands"]["output"]
    assert "never" not in ops["run_setup_commands"]["output"].replace("echo never", "")
    assert ops["publish_access"]["status"] == "skipped"
    assert not containers_of(d["id"])


def test_setup_timeout_kills_and_fails(server):
    d = server.create({"name": "slow", "setup_timeout_seconds": 30,
                       "setup_commands": ["echo started; sleep 300 & sleep 300"]})
    t0 = time.time()
    d = server.wait_state(d["id"], timeout=90)
    assert d["state"] == "failed"
    assert "timed out after 30 s" in d["error"]["message"]
    assert time.time() - t0 < 60


def test_output_tail_is_last_64_kib(server):
    d = server.create({"name": "noisy", "setup_commands": ["seq 1 40000; echo LAST-LINE"]})
    d = server.wait_state(d["id"])
    assert d["state"] == "ready"
    out = server.operations(d["id"])[3]
    assert out["output_truncated"] is True
    assert len(out["output"].encode()) <= 64 * 1024
    assert out["output"].rstrip().endswith("LAST-LINE")
    server.request("DELETE", f"/api/v1/devboxes/{d['id']}")


def test_setup_output_is_visible_between_commands(server):
    """While a later command runs, the operation shows what the earlier ones printed; the
    last command's output arrives with the result."""
    d = server.create({"name": "live", "setup_commands": ["echo first-part", "sleep 4", "echo last-part"]})
    deadline = time.time() + 60
    seen = None
    while time.time() < deadline:
        op = server.operations(d["id"])[3]
        if op["status"] == "running" and "first-part" in op["output"]:
            seen = op
            break
        assert op["status"] in ("pending", "running"), op
        time.sleep(0.1)
    assert seen is not None, "the first command's output never showed while the step ran"
    assert "last-part" not in seen["output"]
    d = server.wait_state(d["id"])
    assert d["state"] == "ready"
    out = server.operations(d["id"])[3]["output"]
    assert out == "$ echo first-part\nfirst-part\n$ sleep 4\n$ echo last-part\nlast-part\n", out
    server.request("DELETE", f"/api/v1/devboxes/{d['id']}")


def test_users_me(server):
    me = server.request("GET", "/api/v1/users/me").json()
    assert me["id"].startswith("usr_") and me["ssh_key"] is None and me["external_id"] is None
