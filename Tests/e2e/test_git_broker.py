"""Issue 19, the git broker: a repository created with push_branches gets an origin that
points at the service's broker on the box's gateway; `git fetch` and `git push` work from the
box without any token in it. The fake GitHub (fake_github.py, git http-backend) demands a live
token with write access for a push and records every git request."""
import json
import os
import re
import sqlite3
import subprocess
import time

import requests

from devbox_harness import Server
from fake_github import FakeGitHub, build_app_repo, build_simple_repo, git
from secret_scan import scan_files

APP_REDIRECT = "http://127.0.0.1:9/app/github/done"
GIT_ID = "-c user.name=agent -c user.email=agent@example.com"


def start_fake() -> FakeGitHub:
    f = FakeGitHub(page_size=50).start()
    f.add_user("alice", 1001)
    f.add_org("acme", ["alice"])
    f.add_repo("alice/app", private=True)
    f.shas = build_app_repo(f, "alice/app")
    f.add_repo("alice/other", private=True)
    build_simple_repo(f, "alice/other", "not on the devbox\n")
    f.add_repo("alice/plain", private=True)
    build_simple_repo(f, "alice/plain", "cloned, not brokered\n")
    return f


def server_for(fresh_server, fake: FakeGitHub, **kw) -> Server:
    s = fresh_server(env={
        "DEVBOX_GITHUB_CLIENT_ID": fake.client_id, "DEVBOX_GITHUB_CLIENT_SECRET": fake.client_secret,
        "DEVBOX_GITHUB_URL": fake.base, "DEVBOX_GITHUB_API_URL": fake.api_base,
        "DEVBOX_OAUTH_REDIRECT_ALLOWLIST": "http://127.0.0.1:9/app/",
    }, **kw)
    s.extra_env["DEVBOX_PUBLIC_URL"] = s.base
    return s


def connect(s: Server, fake: FakeGitHub) -> str:
    """The OAuth round trip for the provider's user as alice; returns the token GitHub issued."""
    r = s.request("POST", "/api/v1/integrations/github/connect", json_body={"redirect_url": APP_REDIRECT})
    assert r.status_code == 200, r.text
    fake.authorize_as = "alice"
    at_github = requests.get(r.json()["authorization_url"], allow_redirects=False, timeout=10)
    back = requests.get(at_github.headers["Location"], allow_redirects=False, timeout=30)
    assert back.status_code == 302 and "github=connected" in back.headers["Location"], back.headers
    return fake.issued[-1]


def run(s: Server, devbox_id: str, script: str, timeout: int = 120) -> dict:
    r = s.request("POST", f"/api/v1/devboxes/{devbox_id}/exec", timeout=timeout + 30,
                  json_body={"command": ["sh", "-c", script], "timeout_seconds": timeout})
    assert r.status_code == 200, r.text
    return r.json()


def ok(s: Server, devbox_id: str, script: str) -> str:
    out = run(s, devbox_id, script)
    assert out["exit_code"] == 0, out
    return out["stdout"].strip()


def box_files(s: Server, devbox_id: str) -> list:
    """Every regular file of the box's host directory but the merged root and the image's
    read-only layers (shared by every box, not written by this one)."""
    import glob
    [box] = glob.glob(os.path.join(s.data_dir, "boxes", f"*{devbox_id}"))
    out = []
    for top in os.listdir(box):
        if top in ("rootfs", "work", "lower"):
            continue
        p = os.path.join(box, top)
        if os.path.isfile(p):
            out.append(p)
        for root, _, files in os.walk(p):
            out += [os.path.join(root, n) for n in files
                    if os.path.isfile(os.path.join(root, n)) and not os.path.islink(os.path.join(root, n))]
    return out


def test_push_fetch_and_refusals_through_the_broker(fresh_server):
    fake = start_fake()
    try:
        s = server_for(fresh_server, fake).start()
        token = connect(s, fake)
        d = s.create({"name": "pusher", "repositories": [
            {"full_name": "alice/app", "push_branches": ["agent/*", "fix-**"]}, {"full_name": "alice/plain"}]})
        d = s.wait_state(d["id"])
        assert d["state"] == "ready", [(o["name"], o["error"], o["output"][-400:]) for o in s.operations(d["id"])]
        assert [r["push_branches"] for r in d["repositories"]] == [["agent/*", "fix-**"], []]
        b = s.wait_state(s.create({"name": "neighbour"})["id"])
        assert b["state"] == "ready"

        origin = ok(s, d["id"], "git -C /workspace/app remote get-url origin")
        m = re.fullmatch(rf"http://([0-9.]+):(\d+)/git/{d['id']}/([0-9a-f]{{48}})/alice/app\.git", origin)
        assert m, origin
        # Without push_branches: the seed's clone, origin is GitHub's URL.
        assert ok(s, d["id"], "git -C /workspace/plain remote get-url origin") == f"{fake.base}/alice/plain.git"

        # A new branch agent/x: lands in the fake GitHub, pushed with the account's token.
        pushes = len(fake.git_requests)
        head = ok(s, d["id"], f"cd /workspace/app && git checkout -q -b agent/x && echo work > agent.txt && "
                              f"git add agent.txt && git {GIT_ID} commit -q -m 'agent work' && "
                              "git push -q origin agent/x 2>&1 && git rev-parse HEAD").splitlines()[-1]
        assert fake.ref("alice/app", "refs/heads/agent/x") == head
        seen = fake.git_requests[pushes:]
        assert any(r["push"] and r.get("status") == 200 for r in seen), seen
        assert all(r["authorization"] and r["authorization"].startswith("Basic ") for r in seen), seen
        # fix-** matches across segments.
        ok(s, d["id"], "cd /workspace/app && git push -q origin HEAD:refs/heads/fix-a/b 2>&1")
        assert fake.ref("alice/app", "refs/heads/fix-a/b") == head

        # main (the default branch) and a tag: refused per ref, nothing forwarded.
        main_before = fake.ref("alice/app", "refs/heads/main")
        before = len(fake.git_requests)
        out = run(s, d["id"], "cd /workspace/app && git push origin HEAD:main 2>&1")
        assert out["exit_code"] != 0 and "push_branches" in out["stdout"] and "rejected" in out["stdout"], out
        assert fake.ref("alice/app", "refs/heads/main") == main_before
        out = run(s, d["id"], "cd /workspace/app && git tag v9 && git push origin v9 2>&1")
        assert out["exit_code"] != 0 and "only branches" in out["stdout"], out
        assert fake.ref("alice/app", "refs/tags/v9") is None
        # Mixed: one allowed, one refused: neither lands.
        out = run(s, d["id"], "cd /workspace/app && git push origin HEAD:agent/y HEAD:main 2>&1")
        assert out["exit_code"] != 0, out
        assert fake.ref("alice/app", "refs/heads/agent/y") is None
        assert not [r for r in fake.git_requests[before:] if r["path"] == "/git-receive-pack"]

        # Fetch: a commit made on GitHub's side arrives in the box.
        work = os.path.join(fake.tmp, "upstream-work")
        git("clone", "-q", fake.git_dir("alice/app"), work)
        git("checkout", "-q", "feature", cwd=work)
        open(os.path.join(work, "upstream.txt"), "w").write("from upstream\n")
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", "upstream", cwd=work)
        git("push", "-q", "origin", "feature", cwd=work)
        upstream = git("rev-parse", "HEAD", cwd=work)
        assert ok(s, d["id"], "cd /workspace/app && git fetch -q origin 2>&1 && git rev-parse origin/feature") == upstream

        # A repository the devbox was not created with: 403 naming it, GitHub not asked.
        before = len(fake.git_requests)
        other = origin.replace("/alice/app.git", "/alice/other.git")
        out = run(s, d["id"], f"git ls-remote {other} 2>&1")
        assert out["exit_code"] != 0 and "alice/other" in out["stdout"] and "403" in out["stdout"], out
        plain = origin.replace("/alice/app.git", "/alice/plain.git")
        assert run(s, d["id"], f"git ls-remote {plain} 2>&1")["exit_code"] != 0
        assert len(fake.git_requests) == before

        # Another box with this box's path (secret included): refused; a wrong secret: refused.
        out = run(s, b["id"], f"git ls-remote {origin} 2>&1")
        assert out["exit_code"] != 0 and "another devbox" in out["stdout"], out
        out = run(s, d["id"], f"git ls-remote {origin.replace(m[3], '0' * 48)} 2>&1")
        assert out["exit_code"] != 0 and "unknown git broker path" in out["stdout"], out
        # From the host (not a box): refused.
        for host in ("127.0.0.1", m[1]):
            r = requests.get(f"http://{host}:{m[2]}/git/{d['id']}/{m[3]}/alice/app.git/info/refs?service=git-upload-pack",
                             timeout=10)
            assert r.status_code == 403, (host, r.text)
        assert len(fake.git_requests) == before

        # The token's bytes: nowhere in the box's files, its processes' environments, the log, answers.
        files = box_files(s, d["id"])
        assert any(f.endswith("/workspace/app/.git/config") for f in files)
        readable = []
        for f in files + [s.log_path]:
            try:
                if os.path.getsize(f) <= 256 << 20:
                    open(f, "rb").read(1)
                    readable.append(f)
            except OSError:
                pass  # a special file of the box's runtime state
        assert any(f.endswith("/workspace/app/.git/config") for f in readable)
        assert not scan_files(readable, token.encode(), []), "token in the box's files or the log"
        out = ok(s, d["id"], f"for f in /proc/[0-9]*/environ; do cat $f; echo; done | grep -cF '{token}' || true; "
                             f"grep -rlsF '{token}' /workspace /root /tmp /etc | wc -l")
        assert out.split() == ["0", "0"], out
        answers = json.dumps([s.get(d["id"]), s.operations(d["id"]), s.request("GET", "/api/v1/devboxes").json()])
        assert token not in answers and m[3] not in s.log()

        # A restart of serve keeps brokering (same port, same path).
        s.stop()
        s2 = server_for(fresh_server, fake, data_dir=s.data_dir, token=s.token)
        s2.log_path = s.log_path
        s2.start()
        ok(s2, d["id"], "cd /workspace/app && git commit -q --allow-empty -m again -c user.name=a 2>/dev/null || "
                        f"git -C /workspace/app {GIT_ID} commit -q --allow-empty -m again")
        head = ok(s2, d["id"], "cd /workspace/app && git push -q origin agent/x 2>&1 && git rev-parse HEAD").splitlines()[-1]
        assert fake.ref("alice/app", "refs/heads/agent/x") == head

        # Disconnecting GitHub ends the brokering at once.
        assert s2.request("DELETE", "/api/v1/integrations/github/connection").status_code == 204
        out = run(s2, d["id"], "cd /workspace/app && git fetch origin 2>&1")
        assert out["exit_code"] != 0 and "token" in out["stdout"], out

        # Destroy: the path secret goes; nothing of the broker is left for the devbox.
        assert s2.request("DELETE", f"/api/v1/devboxes/{d['id']}").status_code == 204
        s2.wait_state(d["id"], states=("destroyed",))
        with sqlite3.connect(os.path.join(s2.data_dir, "devbox.sqlite")) as db:
            assert db.execute("SELECT count(*) FROM devbox_git_broker WHERE devbox_id = ?", (d["id"],)).fetchone()[0] == 0
        assert token not in s2.log()
        s2.delete_all()
    finally:
        fake.stop()


def test_push_branches_input_is_checked(fresh_server):
    fake = start_fake()
    try:
        s = server_for(fresh_server, fake).start()
        bad = [([], "repositories[0].push_branches"), (["ok", ""], "repositories[0].push_branches[1]"),
               (["-x"], "repositories[0].push_branches[0]"), (["a b"], "repositories[0].push_branches[0]"),
               (["x" * 201], "repositories[0].push_branches[0]"), ([f"b{i}" for i in range(33)], "repositories[0].push_branches")]
        for globs, field in bad:
            r = s.request("POST", "/api/v1/devboxes", json_body={
                "name": "bad", "repositories": [{"full_name": "alice/app", "push_branches": globs}]})
            assert r.status_code == 422 and r.json()["error"]["field"] == field, (globs, r.text)
        r = s.request("POST", "/api/v1/devboxes", json_body={
            "name": "bad", "repositories": [{"full_name": "alice/app", "push_branches": "agent/*"}]})
        assert r.status_code in (400, 422), r.text
        # Without a connected account there is no token to broker with: 422 naming the field.
        r = s.request("POST", "/api/v1/devboxes", json_body={
            "name": "anon", "repositories": [{"full_name": "alice/app", "push_branches": ["agent/*"]}]})
        assert r.status_code == 422 and r.json()["error"]["field"] == "repositories[0].push_branches", r.text
    finally:
        fake.stop()
