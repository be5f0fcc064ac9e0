"""GitHub integration and repository cloning (issue 4), against a local GitHub-compatible
server (fake_github.py: OAuth, REST with Link pagination, smart-HTTP git that demands the
token for private repositories)."""
import glob
import hashlib
import os
import sqlite3
import time
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests

from devbox_harness import Server
from fake_github import FakeGitHub, build_app_repo, build_simple_repo
from secret_scan import data_dir_files, scan_files

JWT_SECRET = "e2e-github-jwt-secret-0123456789abcdef"
CALLBACK = "/api/v1/integrations/github/callback"
APP_REDIRECT = "http://127.0.0.1:9/app/github/done"


def bearer(sub: str) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 3600}, JWT_SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def fake():
    f = FakeGitHub(page_size=2).start()
    f.add_user("alice", 1001)
    f.add_user("bob", 1002)
    f.add_user("carol", 1003)
    f.add_org("acme", ["alice"])
    f.add_org("globex", ["alice"])
    f.add_org("opensrc", ["bob"])
    f.add_repo("alice/private-app", private=True)
    f.shas = build_app_repo(f, "alice/private-app")
    f.add_repo("alice/public-lib", private=False)
    f.public_sha = build_simple_repo(f, "alice/public-lib", "public library\n")
    f.add_repo("acme/service", private=True)
    f.acme_sha = build_simple_repo(f, "acme/service", "acme service\n")
    f.add_repo("globex/secret", private=True)
    build_simple_repo(f, "globex/secret", "globex secret\n")
    f.add_repo("opensrc/tool", private=False)
    f.tool_sha = build_simple_repo(f, "opensrc/tool", "open tool\n")
    f.add_repo("bob/shared", private=True, collaborators=["alice"])
    build_simple_repo(f, "bob/shared", "shared with alice\n")
    for i in range(1, 5):
        f.add_repo(f"alice/extra-{i}", private=True)
    yield f
    f.stop()


@pytest.fixture(scope="module")
def gh(fake):
    s = Server(env={
        "DEVBOX_USER_JWT_SECRET": JWT_SECRET,
        "DEVBOX_GITHUB_CLIENT_ID": fake.client_id,
        "DEVBOX_GITHUB_CLIENT_SECRET": fake.client_secret,
        "DEVBOX_GITHUB_URL": fake.base,
        "DEVBOX_GITHUB_API_URL": fake.api_base,
        "DEVBOX_OAUTH_REDIRECT_ALLOWLIST": "http://127.0.0.1:9/app/, https://app.example.com/github",
    })
    s.extra_env["DEVBOX_PUBLIC_URL"] = s.base
    s.start()
    yield s
    # the harness deletes the provider user's devboxes only; these belong to JWT users
    for user, devbox_id in CREATED:
        call(s, "DELETE", f"/api/v1/devboxes/{devbox_id}", user)
    s.close()


CREATED: list = []  # (user, devbox id) of every devbox these tests created


def call(s: Server, method: str, path: str, user: str, body=None) -> requests.Response:
    r = s.request(method, path, json_body=body, bearer=bearer(user))
    if method == "POST" and path == "/api/v1/devboxes" and r.status_code == 202:
        CREATED.append((user, r.json()["id"]))
    return r


def connect(s: Server, fake: FakeGitHub, user: str, as_login: str = "alice", redirect: str = APP_REDIRECT + "?from=e2e"):
    """The whole browser round trip. Returns (connect answer, callback URL, final Location)."""
    r = call(s, "POST", "/api/v1/integrations/github/connect", user, {"redirect_url": redirect})
    assert r.status_code == 200, r.text
    start = r.json()
    fake.authorize_as = as_login
    at_github = requests.get(start["authorization_url"], allow_redirects=False, timeout=10)
    assert at_github.status_code == 302
    callback_url = at_github.headers["Location"]
    assert callback_url.startswith(s.base + CALLBACK + "?")
    back = requests.get(callback_url, allow_redirects=False, timeout=30)  # a browser: no provider token
    assert back.status_code == 302, back.text
    return start, callback_url, back.headers["Location"]


def connection(s: Server, user: str):
    r = call(s, "GET", "/api/v1/integrations/github/connection", user)
    assert r.status_code == 200, r.text
    return r.json()


def wait(s: Server, devbox_id: str, user: str, timeout: float = 180) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        d = call(s, "GET", f"/api/v1/devboxes/{devbox_id}", user).json()
        if d["state"] in ("ready", "failed", "destroyed"):
            return d
        time.sleep(0.1)
    raise TimeoutError(call(s, "GET", f"/api/v1/devboxes/{devbox_id}/operations", user).text)


def create(s: Server, user: str, body: dict) -> dict:
    r = call(s, "POST", "/api/v1/devboxes", user, body)
    assert r.status_code == 202, r.text
    return wait(s, r.json()["id"], user)


def clone_op(s: Server, devbox_id: str, user: str) -> dict:
    ops = call(s, "GET", f"/api/v1/devboxes/{devbox_id}/operations", user).json()["operations"]
    return [o for o in ops if o["name"] == "clone_repositories"][0]


def repositories(s: Server, devbox_id: str, user: str) -> list:
    r = call(s, "GET", f"/api/v1/devboxes/{devbox_id}/repositories", user)
    assert r.status_code == 200, r.text
    return r.json()["repositories"]


def in_box(s: Server, devbox_id: str, command: str) -> str:
    r = s.exec_in_box(devbox_id, command)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def box_files(s: Server, devbox_id: str) -> list:
    """Every regular file of the box's own host directory (upper layer, workspace, env,
    bundle), not the merged root nor the image's read-only layers mounted for it (`lower/`:
    shared by every box, never written by this one)."""
    [box] = glob.glob(os.path.join(s.data_dir, "boxes", f"*{devbox_id}"))
    out = []
    for top in os.listdir(box):
        if top in ("rootfs", "work", "lower"):
            continue
        p = os.path.join(box, top)
        if os.path.isfile(p):
            out.append(p)
        for root, _, files in os.walk(p):
            out += [os.path.join(root, n) for n in files if os.path.isfile(os.path.join(root, n))
                    and not os.path.islink(os.path.join(root, n))]
    return out


def key_of(s: Server) -> bytes:
    return open(os.path.join(s.data_dir, "encryption.key"), "rb").read().strip()


# -- OAuth ---------------------------------------------------------------------------


def test_oauth_round_trip(gh, fake):
    user = "oauth-round-trip"
    assert connection(gh, user) is None
    start, callback_url, location = connect(gh, fake, user)
    auth = urlsplit(start["authorization_url"])
    q = {k: v[0] for k, v in parse_qs(auth.query).items()}
    assert f"{auth.scheme}://{auth.netloc}{auth.path}" == fake.base + "/login/oauth/authorize"
    assert q["client_id"] == fake.client_id and q["state"] == start["state"]
    assert q["redirect_uri"] == gh.base + CALLBACK and "repo" in q["scope"].split()
    # back at the client's URL, with its own query kept and the outcome added; no token
    assert location.startswith(APP_REDIRECT + "?from=e2e&")
    outcome = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert outcome["github"] == "connected" and outcome["login"] == "alice"
    token = fake.issued[-1]
    assert token not in location
    c = connection(gh, user)
    assert c["login"] == "alice" and c["github_user_id"] == 1001
    assert set(c["scopes"]) == {"repo", "read:org"} and c["connected_at"]
    assert token not in str(c)
    # the state is single-use: the same callback again is refused
    again = requests.get(callback_url, allow_redirects=False, timeout=10)
    assert again.status_code == 400 and again.json()["error"]["field"] == "state"
    # a pending state is stored as its SHA-256 only
    pending = call(gh, "POST", "/api/v1/integrations/github/connect", user, {"redirect_url": APP_REDIRECT}).json()["state"]
    with sqlite3.connect(os.path.join(gh.data_dir, "devbox.sqlite")) as db:
        rows = [" ".join(map(str, r)) for r in db.execute("SELECT * FROM github_oauth_states").fetchall()]
        assert db.execute("SELECT count(*) FROM github_connections WHERE token_encrypted LIKE 'gAAAAA%'").fetchone()[0] >= 1
    assert any(hashlib.sha256(pending.encode()).hexdigest() in r for r in rows)
    assert all(pending not in r for r in rows)


def test_bad_expired_and_reused_state_store_nothing(gh, fake):
    user = "bad-states"
    # garbage and missing state
    for params in ({"code": "x", "state": "garbage"}, {"code": "x"}, {}, {"state": ""}):
        r = requests.get(gh.base + CALLBACK, params=params, allow_redirects=False, timeout=10)
        assert r.status_code == 400, (params, r.status_code, r.text)
        assert r.json()["error"]["field"] == "state"
    # an expired state: the flow starts, the state ages past its 10 minutes, the browser returns
    fake.authorize_as = "carol"  # revoking carol's grant below leaves other tests' tokens alone
    r = call(gh, "POST", "/api/v1/integrations/github/connect", user, {"redirect_url": APP_REDIRECT})
    start = r.json()
    with sqlite3.connect(os.path.join(gh.data_dir, "devbox.sqlite")) as db:
        db.execute("UPDATE github_oauth_states SET expires_at = '2000-01-01 00:00:00.000'")
    at_github = requests.get(start["authorization_url"], allow_redirects=False, timeout=10)
    codes_before = len(fake.codes)
    r = requests.get(at_github.headers["Location"], allow_redirects=False, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["field"] == "state"
    assert len(fake.codes) == codes_before, "the code must not be exchanged for a bad state"
    # a state of one flow does not serve another's code; reused after its use: 400
    r = call(gh, "POST", "/api/v1/integrations/github/connect", user, {"redirect_url": APP_REDIRECT})
    state = r.json()["state"]
    at_github = requests.get(r.json()["authorization_url"], allow_redirects=False, timeout=10)
    first = requests.get(at_github.headers["Location"], allow_redirects=False, timeout=30)
    assert first.status_code == 302
    call(gh, "DELETE", "/api/v1/integrations/github/connection", user)
    assert connection(gh, user) is None
    r = requests.get(gh.base + CALLBACK, params={"code": "another", "state": state}, allow_redirects=False, timeout=10)
    assert r.status_code == 400
    assert connection(gh, user) is None


def test_github_error_and_bad_code_are_reported_to_the_client(gh, fake):
    user = "denied"
    r = call(gh, "POST", "/api/v1/integrations/github/connect", user, {"redirect_url": APP_REDIRECT})
    back = requests.get(gh.base + CALLBACK, params={"error": "access_denied", "state": r.json()["state"]},
                        allow_redirects=False, timeout=10)
    assert back.status_code == 302
    q = {k: v[0] for k, v in parse_qs(urlsplit(back.headers["Location"]).query).items()}
    assert q == {"github": "error", "error": "access_denied"}
    r = call(gh, "POST", "/api/v1/integrations/github/connect", user, {"redirect_url": APP_REDIRECT})
    back = requests.get(gh.base + CALLBACK, params={"code": "not-a-real-code", "state": r.json()["state"]},
                        allow_redirects=False, timeout=10)
    q = {k: v[0] for k, v in parse_qs(urlsplit(back.headers["Location"]).query).items()}
    assert q == {"github": "error", "error": "bad_verification_code"}
    assert connection(gh, user) is None


def test_the_client_does_not_follow_redirects_with_the_token(gh, fake):
    user = "redirected"
    fake.redirect_api = True
    try:
        _, _, location = connect(gh, fake, user)
    finally:
        fake.redirect_api = False
    q = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert q == {"from": "e2e", "github": "error", "error": "user_lookup_failed"}
    assert fake.elsewhere == [], "the token was replayed to a redirect target"
    assert connection(gh, user) is None


def test_without_oauth_configuration(server):
    r = server.request("POST", "/api/v1/integrations/github/connect", json_body={"redirect_url": "https://a.example/"})
    assert r.status_code == 503 and "DEVBOX_GITHUB_CLIENT_ID" in r.json()["error"]["message"]
    assert server.request("GET", "/api/v1/integrations/github/connection").json() is None
    assert server.request("GET", "/api/v1/integrations/github/repos").status_code == 409
    r = requests.get(server.base + CALLBACK, params={"state": "x", "code": "y"}, allow_redirects=False, timeout=10)
    assert r.status_code == 400


def test_open_redirect_is_refused(gh):
    for url in ["https://evil.example.com/github", "http://127.0.0.1:9/appx", "http://127.0.0.1:9/app/../admin",
                "https://app.example.com/githubx", "https://app.example.com.evil.net/github",
                "https://user@app.example.com/github", "//evil.example.com/app/", "javascript:alert(1)",
                "http://127.0.0.1:10/app/"]:
        r = call(gh, "POST", "/api/v1/integrations/github/connect", "redirects", {"redirect_url": url})
        assert r.status_code == 422, (url, r.text)
        assert r.json()["error"]["field"] == "redirect_url"
    for body in [{}, {"redirect_url": 5}, {"redirect_url": None}]:
        r = call(gh, "POST", "/api/v1/integrations/github/connect", "redirects", body)
        assert r.status_code == 422 and r.json()["error"]["field"] == "redirect_url", r.text
    assert call(gh, "POST", "/api/v1/integrations/github/connect", "redirects",
                {"redirect_url": "https://app.example.com/github/done?x=1"}).status_code == 200


def test_endpoints_need_a_provider_token_except_the_callback(gh):
    for method, path in [("POST", "/api/v1/integrations/github/connect"), ("GET", "/api/v1/integrations/github/connection"),
                         ("DELETE", "/api/v1/integrations/github/connection"), ("GET", "/api/v1/integrations/github/repos"),
                         ("GET", "/api/v1/integrations/github/orgs"), ("PUT", "/api/v1/integrations/github/org-grants")]:
        assert requests.request(method, gh.base + path, timeout=10).status_code == 401, path
    assert requests.get(gh.base + CALLBACK, params={"state": "x"}, timeout=10).status_code == 400


# -- listing and grants ----------------------------------------------------------------


def test_listing_follows_every_page_and_grants_filter_org_repos(gh, fake):
    user = "lister"
    assert call(gh, "GET", "/api/v1/integrations/github/repos", user).status_code == 409  # not connected
    assert call(gh, "PUT", "/api/v1/integrations/github/org-grants", user, {"orgs": ["acme"]}).status_code == 409
    connect(gh, fake, user)
    before = len([p for m, p in fake.requests if p.startswith(fake.api_prefix + "/user/repos")])
    r = call(gh, "GET", "/api/v1/integrations/github/repos", user)
    assert r.status_code == 200, r.text
    names = [x["full_name"] for x in r.json()["repos"]]
    # personal repositories always (own and collaborator), organisation ones only when granted
    assert names == ["alice/extra-1", "alice/extra-2", "alice/extra-3", "alice/extra-4", "alice/private-app",
                     "alice/public-lib", "bob/shared"]
    pages = len([p for m, p in fake.requests if p.startswith(fake.api_prefix + "/user/repos")]) - before
    assert pages == 5  # 9 repositories, 2 per page
    first = r.json()["repos"][4]
    assert first["private"] is True and first["default_branch"] == "main" and isinstance(first["id"], int)

    orgs = call(gh, "GET", "/api/v1/integrations/github/orgs", user).json()["orgs"]
    assert [(o["login"], o["granted"]) for o in orgs] == [("acme", False), ("globex", False)]
    assert call(gh, "PUT", "/api/v1/integrations/github/org-grants", user, {"orgs": ["ACME"]}).status_code == 204
    orgs = call(gh, "GET", "/api/v1/integrations/github/orgs", user).json()["orgs"]
    assert [(o["login"], o["granted"]) for o in orgs] == [("acme", True), ("globex", False)]
    names = [x["full_name"] for x in call(gh, "GET", "/api/v1/integrations/github/repos", user).json()["repos"]]
    assert "acme/service" in names and "globex/secret" not in names
    assert call(gh, "PUT", "/api/v1/integrations/github/org-grants", user, {"orgs": []}).status_code == 204
    names = [x["full_name"] for x in call(gh, "GET", "/api/v1/integrations/github/repos", user).json()["repos"]]
    assert "acme/service" not in names

    for body, field in [({"orgs": ["bad name"]}, "orgs[0]"), ({"orgs": ["ok", "-x"]}, "orgs[1]"), ({"orgs": "acme"}, "orgs"),
                        ({}, "orgs"), ({"orgs": [f"o{i}" for i in range(101)]}, "orgs")]:
        r = call(gh, "PUT", "/api/v1/integrations/github/org-grants", user, body)
        assert r.status_code == 422 and r.json()["error"]["field"] == field, (body, r.text)
    r = gh.request("PUT", "/api/v1/integrations/github/org-grants", data=b"{not json", bearer=bearer(user),
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_disconnect_deletes_the_token_and_revokes_the_grant(gh, fake):
    user = "disconnecter"
    connect(gh, fake, user, as_login="bob")
    token = fake.issued[-1]
    assert fake.tokens.get(token) == "bob"
    r = call(gh, "DELETE", "/api/v1/integrations/github/connection", user)
    assert r.status_code == 204
    assert token in fake.revoked and token not in fake.tokens
    assert connection(gh, user) is None
    assert call(gh, "GET", "/api/v1/integrations/github/repos", user).status_code == 409
    assert call(gh, "DELETE", "/api/v1/integrations/github/connection", user).status_code == 204  # idempotent


# -- cloning ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cloner(gh, fake):
    """A user connected as alice with the organisation acme granted."""
    user = "cloner"
    connect(gh, fake, user)
    token = fake.issued[-1]
    assert call(gh, "PUT", "/api/v1/integrations/github/org-grants", user, {"orgs": ["acme"]}).status_code == 204
    return user, token


def test_clone_branch_tag_sha_org_and_nested_target(gh, fake, cloner):
    user, token = cloner
    d = create(gh, user, {"name": "clones", "repositories": [
        {"full_name": "alice/private-app", "ref": "feature", "target_path": "/workspace/feat"},
        {"full_name": "alice/private-app", "ref": "v1.0", "target_path": "/workspace/tagged"},
        {"full_name": "alice/private-app", "ref": fake.shas["first"], "target_path": "/workspace/pinned"},
        {"full_name": "alice/private-app", "ref": fake.shas["second"][:10], "target_path": "/workspace/short"},
        {"full_name": "acme/service", "target_path": "/workspace/deep/nested/service"},
        {"full_name": "bob/shared"},
    ], "setup_commands": ["test -f /workspace/feat/feature.txt"]})
    assert d["state"] == "ready", clone_op(gh, d["id"], user)
    box = d["id"]
    assert in_box(gh, box, "git -C /workspace/feat rev-parse HEAD") == fake.shas["feature"]
    assert in_box(gh, box, "git -C /workspace/feat rev-parse --abbrev-ref HEAD") == "feature"
    assert in_box(gh, box, "cat /workspace/feat/feature.txt") == "feature work"
    assert in_box(gh, box, "git -C /workspace/tagged rev-parse HEAD") == fake.shas["second"]
    assert in_box(gh, box, "cat /workspace/tagged/README.md") == "version 1"
    assert in_box(gh, box, "git -C /workspace/pinned rev-parse HEAD") == fake.shas["first"]
    assert in_box(gh, box, "test ! -e /workspace/pinned/src && echo absent") == "absent"
    assert in_box(gh, box, "git -C /workspace/short rev-parse HEAD") == fake.shas["second"]
    assert in_box(gh, box, "cat /workspace/deep/nested/service/README.md") == "acme service"
    assert in_box(gh, box, "cat /workspace/shared/README.md") == "shared with alice"
    # the full history is there (other branches and tags), as after a plain git clone
    assert "origin/main" in in_box(gh, box, "git -C /workspace/feat branch -r")
    assert in_box(gh, box, "git -C /workspace/feat tag") == "v1.0"
    # the clones (and directories made on the way to a target) are the box root's inside,
    # of the box's own id range on the host, never host root's (issue 18)
    owners = in_box(gh, box, "find /workspace/feat /workspace/deep -xdev -printf '%U:%G\\n' | sort -u")
    assert owners == "0:0", owners
    # no credential in any repository's config, remote URL or the box's environment
    for path in ["feat", "tagged", "pinned", "short", "deep/nested/service", "shared"]:
        config = in_box(gh, box, f"cat /workspace/{path}/.git/config")
        assert "extraheader" not in config.lower() and token not in config and "Authorization" not in config
        url = in_box(gh, box, f"git -C /workspace/{path} remote get-url origin")
        assert url.startswith(fake.base + "/") and url.endswith(".git") and "@" not in url
    assert token not in in_box(gh, box, "env; cat /proc/1/environ | tr '\\0' '\\n'")

    repos = repositories(gh, box, user)
    assert [(r["full_name"], r["status"], r["commit"], r["error"]) for r in repos] == [
        ("alice/private-app", "cloned", fake.shas["feature"], None),
        ("alice/private-app", "cloned", fake.shas["second"], None),
        ("alice/private-app", "cloned", fake.shas["first"], None),
        ("alice/private-app", "cloned", fake.shas["second"], None),
        ("acme/service", "cloned", fake.acme_sha, None),
        ("bob/shared", "cloned", repos[5]["commit"], None),
    ]
    assert repos[5]["target_path"] == "/workspace/shared" and repos[0]["ref"] == "feature"
    op = clone_op(gh, box, user)
    assert op["status"] == "succeeded"
    assert "checked out branch feature" in op["output"] and "checked out tag v1.0" in op["output"]
    assert token not in op["output"] and ".clone-" not in op["output"] and gh.data_dir not in op["output"]
    # git sent the token to the git server: private clones succeeded with it
    private_hits = [g for g in fake.git_requests if g["repo"] == "alice/private-app" and g.get("status") == 200]
    assert private_hits and all(g["authorization"] for g in private_hits)


def test_legacy_repository_and_branch(gh, fake, cloner):
    user, _ = cloner
    d = create(gh, user, {"name": "legacy", "repository": f"{fake.base}/alice/private-app", "branch": "feature"})
    assert d["state"] == "ready", clone_op(gh, d["id"], user)
    assert d["repositories"][0]["target_path"] == "/workspace/private-app"
    assert in_box(gh, d["id"], "git -C /workspace/private-app rev-parse HEAD") == fake.shas["feature"]
    r = repositories(gh, d["id"], user)
    assert r[0]["status"] == "cloned" and r[0]["ref"] == "feature"
    d = create(gh, user, {"name": "legacy-default", "repository": "alice/private-app"})
    assert d["state"] == "ready"
    assert in_box(gh, d["id"], "git -C /workspace/private-app rev-parse HEAD") == fake.shas["main"]


def test_a_failed_clone_fails_the_step_naming_the_repository(gh, fake, cloner):
    user, token = cloner
    d = create(gh, user, {"name": "bad-ref", "repositories": [
        {"full_name": "alice/public-lib"},
        {"full_name": "alice/private-app", "ref": "no-such-branch"},
        {"full_name": "alice/private-app", "ref": "main", "target_path": "/workspace/never"},
    ]})
    assert d["state"] == "failed"
    assert d["error"]["operation"] == "clone_repositories"
    assert "alice/private-app" in d["error"]["message"] and "no-such-branch" in d["error"]["message"]
    repos = repositories(gh, d["id"], user)
    assert [r["status"] for r in repos] == ["cloned", "failed", "pending"]
    assert "no-such-branch" in repos[1]["error"] and repos[1]["commit"] is None
    op = clone_op(gh, d["id"], user)
    assert op["status"] == "failed" and "alice/private-app" in op["error"]
    assert token not in str(op) and token not in str(d)


def test_public_repository_without_a_connection(gh, fake):
    user = "never-connected"
    assert connection(gh, user) is None
    seen = len(fake.git_requests)
    d = create(gh, user, {"name": "public", "repositories": [{"full_name": "alice/public-lib"},
                                                           {"full_name": "opensrc/tool", "ref": "main"}]})
    assert d["state"] == "ready", clone_op(gh, d["id"], user)
    assert in_box(gh, d["id"], "git -C /workspace/public-lib rev-parse HEAD") == fake.public_sha
    assert in_box(gh, d["id"], "cat /workspace/tool/README.md") == "open tool"
    assert all(g["authorization"] is None for g in fake.git_requests[seen:])
    # a private one without a connection fails at clone with a clear message
    d = create(gh, user, {"name": "private", "repositories": [{"full_name": "alice/private-app"}]})
    assert d["state"] == "failed"
    msg = d["error"]["message"]
    assert "alice/private-app" in msg and "authentication" in msg and "connect" in msg.lower()


def test_snapshot_box_clones_on_top_and_refuses_a_clone_into_an_existing_path(gh, fake):
    # Issue 23: a create from a snapshot applies its own repositories on top of the snapshot's
    # files; a clone into a path the snapshot already has fails with a clear error, and the
    # snapshot's files there are left as they were.
    user = "snapshot-cloner"
    d = create(gh, user, {"name": "snap-src", "repositories": [{"full_name": "opensrc/tool"}]})
    assert d["state"] == "ready", clone_op(gh, d["id"], user)
    in_box(gh, d["id"], "echo mine > /workspace/tool/LOCAL")
    r = call(gh, "POST", f"/api/v1/devboxes/{d['id']}/snapshots", user, {"name": "with-tool"})
    assert r.status_code == 201, r.text
    snap = r.json()["id"]
    # Another repository on top: both are there.
    ok = create(gh, user, {"name": "snap-plus", "snapshot": snap, "repositories": [{"full_name": "alice/public-lib"}]})
    assert ok["state"] == "ready", clone_op(gh, ok["id"], user)
    assert in_box(gh, ok["id"], "cat /workspace/tool/LOCAL /workspace/public-lib/README.md") == "mine\npublic library"
    # The same repository again: its path exists in the snapshot.
    bad = create(gh, user, {"name": "snap-clash", "snapshot": snap, "repositories": [{"full_name": "opensrc/tool"}]})
    assert bad["state"] == "failed"
    msg = bad["error"]["message"]
    assert "/workspace/tool" in msg and "already exists" in msg, msg
    call(gh, "DELETE", f"/api/v1/snapshots/{snap}", user)


def test_ungranted_organisation_is_refused_at_create(gh, fake, cloner):
    user, _ = cloner
    r = call(gh, "POST", "/api/v1/devboxes", user, {"name": "globex", "repositories": [
        {"full_name": "alice/public-lib"}, {"full_name": "globex/secret"}]})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == "repositories[1].full_name" and "globex" in err["message"] and "org-grants" in err["message"]
    r = call(gh, "POST", "/api/v1/devboxes", user, {"name": "legacy-globex", "repository": "globex/secret"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "repository"
    r = call(gh, "POST", "/api/v1/devboxes", user, {"name": "nope", "repositories": [{"full_name": "nobody/nothing"}]})
    assert r.status_code == 422 and "not found" in r.json()["error"]["message"]
    # a public repository of an organisation the user is not in clones without the token
    d = create(gh, user, {"name": "public-org", "repositories": [{"full_name": "opensrc/tool"}]})
    assert d["state"] == "ready"


def test_ungranted_organisation_is_refused_at_clone_when_create_could_not_tell(gh, fake, cloner):
    user, token = cloner
    fake.fail_repo_lookups = 1  # GitHub cannot answer during the create: the create is accepted
    r = call(gh, "POST", "/api/v1/devboxes", user, {"name": "late", "repositories": [{"full_name": "globex/secret"}]})
    assert r.status_code == 202, r.text
    d = wait(gh, r.json()["id"], user)
    assert d["state"] == "failed" and d["error"]["operation"] == "clone_repositories"
    msg = d["error"]["message"]
    assert "globex/secret" in msg and "globex" in msg and "not granted" in msg and "org-grants" in msg
    [repo] = repositories(gh, d["id"], user)
    assert repo["status"] == "failed" and "not granted" in repo["error"]
    assert not [g for g in fake.git_requests if g["repo"] == "globex/secret"], "no clone may be attempted"


def test_bad_repository_input_is_422_naming_the_field(gh):
    user = "validator"
    for body, field in [
        ({"repositories": [{"full_name": "no-slash"}]}, "repositories[0].full_name"),
        ({"repositories": [{"full_name": "a/b", "ref": "-x"}]}, "repositories[0].ref"),
        ({"repositories": [{"full_name": "a/b", "ref": "a..b"}]}, "repositories[0].ref"),
        ({"repositories": [{"full_name": "a/b", "target_path": "/etc/x"}]}, "repositories[0].target_path"),
        ({"repositories": [{"full_name": "a/b", "target_path": "/workspace/../x"}]}, "repositories[0].target_path"),
        ({"repositories": [{"full_name": "a/b"}, {"full_name": "c/d", "target_path": "/workspace/b/d"}]},
         "repositories[1].target_path"),
        ({"repositories": [{"full_name": "a/b", "repo_id": "x"}]}, "repositories[0].repo_id"),
        ({"repositories": "a/b"}, "repositories"),
        ({"repository": "not a repo"}, "repository"),
        ({"branch": "main"}, "branch"),
    ]:
        r = call(gh, "POST", "/api/v1/devboxes", user, {"name": "v", **body})
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["field"] == field, (body, r.json())
    assert call(gh, "GET", "/api/v1/devboxes/dbx_unknown000000000000/repositories", user).status_code == 404


def test_symlink_planted_in_the_workspace_is_not_followed(gh, fake, cloner, tmp_path):
    """A box that already has a symlink at a target's parent (a restarted pipeline, say)
    cannot redirect the host-side move: the clone fails instead of writing outside."""
    user, _ = cloner
    outside = tmp_path / "outside"
    outside.mkdir()
    r = call(gh, "POST", "/api/v1/devboxes", user, {"name": "symlink", "repositories": [
        {"full_name": "alice/public-lib", "target_path": "/workspace/link/lib"}],
        "setup_commands": ["true"]})
    assert r.status_code == 202
    box_id = r.json()["id"]
    # plant the link from the host side as soon as the workspace exists, before the clone step
    deadline = time.time() + 60
    planted = False
    while time.time() < deadline and not planted:
        # (the workspace is on the box's disk, <box>/disk/workspace, since disk quotas)
        for ws in glob.glob(os.path.join(gh.data_dir, "boxes", f"*{box_id}", "*workspace")) + \
                glob.glob(os.path.join(gh.data_dir, "boxes", f"*{box_id}", "disk", "workspace")):
            try:
                os.symlink(str(outside), os.path.join(ws, "link"))
                planted = True
            except FileExistsError:
                planted = True
        time.sleep(0.005)
    d = wait(gh, box_id, user)
    assert list(outside.iterdir()) == []
    assert planted
    if d["state"] == "failed":  # the link was there before the clone step (the usual case)
        assert "symbolic link" in d["error"]["message"] and "alice/public-lib" in d["error"]["message"]
    else:  # the clone won the race: the link could not be planted over its directory
        assert in_box(gh, box_id, "test -d /workspace/link -a ! -L /workspace/link && echo dir") == "dir"


def test_no_token_anywhere_after_cloning(gh, fake, cloner):
    """The box's host directory (upper layer, workspace, env), the service log and, once
    disconnected, the database (with -wal and -shm) hold no copy of the token."""
    user, token = cloner
    d = create(gh, user, {"name": "scan", "repositories": [
        {"full_name": "alice/private-app", "ref": "feature"}, {"full_name": "acme/service"}],
        "setup_commands": ["env > /root/env.txt", "git -C /workspace/private-app config --list > /workspace/config.txt"]})
    assert d["state"] == "ready"
    key = key_of(gh)
    files = box_files(gh, d["id"])
    assert any(f.endswith("/workspace/private-app/.git/config") for f in files)
    assert any(f.endswith("/upper/root/env.txt") for f in files)
    found = scan_files(files + [gh.log_path], token.encode(), [key])
    assert not found, found
    assert "extraheader" not in in_box(gh, d["id"], "cat /workspace/config.txt").lower()
    # while connected the database holds the token, Fernet-encrypted (the scanner sees it) ...
    assert scan_files(data_dir_files(gh.data_dir), token.encode(), [key])
    with sqlite3.connect(os.path.join(gh.data_dir, "devbox.sqlite")) as db:
        stored = db.execute("SELECT token_encrypted FROM github_connections").fetchall()
    assert stored and all(r[0].startswith("gAAAAA") and token not in r[0] for r in stored)
    # ... and after disconnecting no copy remains in the database, its WAL or shared memory
    assert call(gh, "DELETE", "/api/v1/integrations/github/connection", user).status_code == 204
    found = scan_files(data_dir_files(gh.data_dir), token.encode(), [key])
    assert not found, found
    assert token in fake.revoked


def test_clone_works_under_deny_all(gh, fake, cloner):
    """Clones run host-side, so a box whose egress is deny_all still gets its repositories; the
    box itself reaches nothing, the fake GitHub on the host's loopback included."""
    user, _ = cloner
    # (A public repository: earlier tests of this module disconnect the user's GitHub.)
    d = create(gh, user, {"name": "sealed", "network": {"egress": "deny_all"},
                          "repositories": [{"full_name": "alice/public-lib"}]})
    assert d["state"] == "ready", clone_op(gh, d["id"], user)
    assert d["network"]["egress"] == "deny_all"
    assert in_box(gh, d["id"], "git -C /workspace/public-lib rev-parse HEAD") == fake.public_sha
    out = in_box(gh, d["id"], f"python3 -c \"import socket; s=socket.socket(); s.settimeout(3); "
                              f"print(s.connect_ex(('127.0.0.1', {fake.port})))\"")
    assert out == "111", out   # ECONNREFUSED: the box's own loopback, not the host's
