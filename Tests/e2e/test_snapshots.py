"""Issue 23: snapshots of devboxes (their writable layer and /workspace frozen as read-only
layers of the machine's image store), creates from a snapshot, forks of a running box."""
import hashlib
import os
import re
import subprocess
import tempfile
import time
from urllib.parse import quote

import jwt
import pytest

from devbox_harness import BIN, Server

STORE = os.environ.get("DEVBOX_IMAGE_DIR") or "/var/lib/devbox/images"
JWT_SECRET = "e2e-snapshot-jwt-secret-0123456789abcdef"


def bearer(sub: str) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 3600}, JWT_SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def store_ready():
    subprocess.run([BIN, "image", "build", "--if-missing"], capture_output=True, text=True, timeout=900, check=True)


@pytest.fixture(scope="module")
def server(store_ready):
    s = Server(env={"DEVBOX_USER_JWT_SECRET": JWT_SECRET}).start()
    yield s
    for snap in s.request("GET", "/api/v1/snapshots").json().get("snapshots", []):
        s.request("DELETE", f"/api/v1/snapshots/{snap['id']}")
    s.close()


def ready(s, body, headers=None, bearer_token=None):
    d = s.wait_state(s.create(body, headers=headers, bearer=bearer_token)["id"], bearer=bearer_token)
    assert d["state"] == "ready", s.operations(d["id"])
    return d


def run(s, box, cmd, timeout=120, bearer_token=None):
    r = s.request("POST", f"/api/v1/devboxes/{box}/exec", json_body={"command": ["/bin/sh", "-c", cmd], "timeout_seconds": timeout},
                  timeout=timeout + 30, bearer=bearer_token)
    assert r.status_code == 200, r.text
    return r.json()


def ok(s, box, cmd, **kw):
    out = run(s, box, cmd, **kw)
    assert out["exit_code"] == 0, out
    return out["stdout"]


def snapshot(s, box, name, bearer_token=None):
    r = s.request("POST", f"/api/v1/devboxes/{box}/snapshots", json_body={"name": name}, bearer=bearer_token)
    assert r.status_code == 201, r.text
    return r.json()


def layer_dirs(snap_id):
    stem = snap_id.replace("_", "-")
    return [os.path.join(STORE, "layers", f"{stem}-root"), os.path.join(STORE, "layers", f"{stem}-ws")]


def scan_tree(root, secrets):
    """Paths under `root` whose bytes (file contents, symlink targets, names) hold a secret."""
    hits = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if any(s in name.encode() for s in secrets):
                hits.append(path)
            if os.path.islink(path):
                blob = os.readlink(path).encode()
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    blob = f.read()
            else:
                continue
            if any(s in blob for s in secrets):
                hits.append(path)
    return hits


def make_deb(tmp):
    """A tiny Debian package (installs /usr/share/snaptest/marker and /usr/bin/snaptest)."""
    root = os.path.join(tmp, "pkg")
    os.makedirs(os.path.join(root, "DEBIAN"))
    os.makedirs(os.path.join(root, "usr/share/snaptest"))
    os.makedirs(os.path.join(root, "usr/bin"))
    with open(os.path.join(root, "DEBIAN/control"), "w") as f:
        f.write("Package: snaptest\nVersion: 1.0\nArchitecture: all\nMaintainer: e2e <e2e@example.invalid>\n"
                "Description: devbox snapshot test package\n")
    with open(os.path.join(root, "usr/share/snaptest/marker"), "w") as f:
        f.write("installed by dpkg\n")
    with open(os.path.join(root, "usr/bin/snaptest"), "w") as f:
        f.write("#!/bin/sh\necho snaptest-ok\n")
    os.chmod(os.path.join(root, "usr/bin/snaptest"), 0o755)
    deb = os.path.join(tmp, "snaptest.deb")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", root, deb], check=True, capture_output=True)
    return open(deb, "rb").read()


SETUP = r"""
set -e
cd /workspace
head -c 50000000 /dev/urandom > big.bin
sha256sum big.bin | cut -d' ' -f1 > big.sha
mkdir repo && cd repo && git init -q -b main && git config user.email e2e@example.invalid && git config user.name e2e
echo hello > README && git add README && git commit -q -m "first commit" && cd ..
echo owned > owned && chown 1000:1000 owned
dpkg -i /workspace/snaptest.deb >/dev/null && rm /workspace/snaptest.deb
echo usr-file > /usr/local/share/usr-file
rm -f /etc/motd
mkfifo /workspace/fifo
ln -s README repo/link
"""


def test_three_boxes_from_a_snapshot_see_it_all_and_are_independent(server):
    s = server
    env_secret = "envsecret-" + os.urandom(12).hex()
    token = "sk-ant-snaptoken-" + os.urandom(12).hex()
    src = ready(s, {"name": "snap-src", "env": {"SNAP_SECRET": env_secret}, "credential_profile": {"inject_claude_token": True},
                    "credential_mode": "env"}, headers={"X-Claude-Token": token})
    with tempfile.TemporaryDirectory() as tmp:
        deb = make_deb(tmp)
    r = s.request("PUT", f"/api/v1/devboxes/{src['id']}/files?path={quote('/workspace/snaptest.deb', safe='')}", data=deb)
    assert r.status_code in (200, 201), r.text
    ok(s, src["id"], SETUP)
    # The secrets are in the box's env (its env file), never in a layer.
    assert env_secret in ok(s, src["id"], "echo $SNAP_SECRET") and token in ok(s, src["id"], "echo $ANTHROPIC_API_KEY")
    want_sha = ok(s, src["id"], "cat /workspace/big.sha").strip()

    t0 = time.time()
    snap = snapshot(s, src["id"], "base")
    print(f"snapshot of ~50 MB of changes: {time.time() - t0:.2f} s, size_bytes={snap['size_bytes']}")
    assert snap["id"].startswith("snap_") and snap["name"] == "base" and snap["devbox_id"] == src["id"]
    assert snap["image"] == "debian" and snap["size_bytes"] >= 50_000_000 and snap["created_at"]
    assert s.request("GET", f"/api/v1/snapshots/{snap['id']}").json() == snap
    assert s.request("GET", "/api/v1/snapshots/base").json() == snap
    assert snap in s.request("GET", "/api/v1/snapshots").json()["snapshots"]

    # Token and env bytes are absent from the snapshot's layers on disk; the layers are in
    # canonical ids (the box's root is 0 there, its uid 1000 is 1000).
    roots = [os.path.join(d, "root") for d in layer_dirs(snap["id"])]
    for d in roots:
        assert os.path.isdir(d), d
    assert scan_tree(roots[0], [env_secret.encode(), token.encode()]) == []
    assert scan_tree(roots[1], [env_secret.encode(), token.encode()]) == []
    st = os.lstat(os.path.join(roots[1], "big.bin"))
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert os.lstat(os.path.join(roots[1], "owned")).st_uid == 1000
    assert os.lstat(os.path.join(roots[0], "usr/share/snaptest/marker")).st_uid == 0
    assert not os.path.exists(os.path.join(roots[0], "etc/hostname"))

    boxes = [ready(s, {"name": f"from-snap-{i}", "snapshot": ref}) for i, ref in enumerate([snap["id"], "base", snap["id"]])]
    for b in boxes:
        assert b["image"] == "debian"
        out = ok(s, b["id"], "cd /workspace && sha256sum big.bin | cut -d' ' -f1; git -C repo log --format=%s; cat repo/link;"
                             " stat -c %u:%g big.bin owned; snaptest; dpkg -s snaptest | grep Status; cat /usr/local/share/usr-file;"
                             " test -e /etc/motd && echo motd-present || echo motd-gone; test -p fifo && echo fifo;"
                             " hostname; printenv SNAP_SECRET ANTHROPIC_API_KEY; cat /etc/devbox/env 2>/dev/null; true")
        assert out.split("\n")[:11] == [want_sha, "first commit", "hello", "0:0", "1000:1000", "snaptest-ok",
                                         "Status: install ok installed", "usr-file", "motd-gone", "fifo", b["id"]], out
        assert env_secret not in out and token not in out
    # Independent: each one's writes are its own, and the original is untouched.
    ok(s, boxes[0]["id"], "echo only-in-0 > /workspace/only; echo x >> /usr/local/share/usr-file")
    ok(s, boxes[1]["id"], "echo changed > /workspace/big.bin; rm -rf /workspace/repo")
    for b in [boxes[2], src]:
        out = ok(s, b["id"], "cd /workspace; test -e only && echo only || echo no-only; sha256sum big.bin | cut -d' ' -f1;"
                             " git -C repo log --format=%s; cat /usr/local/share/usr-file")
        assert out.split("\n")[:4] == ["no-only", want_sha, "first commit", "usr-file"], out
    assert ok(s, boxes[0]["id"], "cat /workspace/only /usr/local/share/usr-file") == "only-in-0\nusr-file\nx\n"
    assert ok(s, boxes[1]["id"], "cat /workspace/big.bin; test -e /workspace/repo || echo gone") == "changed\ngone\n"
    # The workspace's writes count against the box's own disk, not the snapshot.
    df = ok(s, boxes[0]["id"], "df -B1 --output=used /workspace | tail -1").strip()
    assert int(df) < 40_000_000, df
    # A snapshot of a box made from a snapshot stacks on it.
    snap2 = snapshot(s, boxes[0]["id"], "second")
    assert snap2["size_bytes"] < 5_000_000, snap2
    b2 = ready(s, {"name": "from-snap2", "snapshot": "second"})
    out = ok(s, b2["id"], "cat /workspace/only; sha256sum /workspace/big.bin | cut -d' ' -f1; cat /usr/local/share/usr-file")
    assert out == f"only-in-0\n{want_sha}\nusr-file\nx\n", out
    for b in boxes + [b2, src]:
        assert s.request("DELETE", f"/api/v1/devboxes/{b['id']}").status_code == 204


def test_fork_of_a_running_box_with_a_writer(server):
    s = server
    src = ready(s, {"name": "fork-src", "env": {"KEEP": "kept-value"}})
    ok(s, src["id"], "cd /workspace && echo data > base.txt && setsid -f sh -c 'i=0; while :; do i=$((i+1));"
                     " printf \"line %d %0400d\\n\" $i 0 >> /workspace/log; done' </dev/null >/dev/null 2>&1")
    time.sleep(1.0)
    t0 = time.time()
    r = s.request("POST", f"/api/v1/devboxes/{src['id']}/fork", json_body={"count": 3, "name": "forked"},
                  headers={"X-Claude-Token": "sk-fork-token-abc123"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["snapshot"]["name"] == "forked" and body["snapshot"]["devbox_id"] == src["id"]
    assert [d["name"] for d in body["devboxes"]] == ["forked-1", "forked-2", "forked-3"]
    forks = [s.wait_state(d["id"]) for d in body["devboxes"]]
    print(f"fork of a running box, 3 boxes ready in {time.time() - t0:.2f} s")
    check = ("python3 -c 'import re,sys\nn=0\nfor l in open(\"/workspace/log\",\"rb\"):\n"
             " n+=1\n m=re.fullmatch(rb\"line (\\d+) 0{400}\\n\",l)\n"
             " assert m and int(m.group(1))==n, (n, l[:60])\nprint(\"OK\", n)'; cat /workspace/base.txt")
    for f in forks:
        assert f["state"] == "ready", s.operations(f["id"])
        out = run(s, f["id"], check)
        # Every line whole (the last one too) and numbered from 1 without a gap.
        assert out["exit_code"] == 0, f"torn or missing line in the fork's log: {out['stderr'][-300:]}"
        verdict, data = out["stdout"].split("\n")[:2]
        assert verdict.startswith("OK ") and int(verdict.split()[1]) > 10 and data == "data", out
        # Files only: the writer does not run in the fork; env is not copied; the fork's own token is.
        assert ok(s, f["id"], "pgrep -f '[l]ine %d' >/dev/null && echo running || echo none").strip() == "none"
        assert ok(s, f["id"], "printenv KEEP; printenv ANTHROPIC_API_KEY; true").strip() == "sk-fork-token-abc123"
    # The original keeps running and writing.
    n1 = int(ok(s, src["id"], "wc -l < /workspace/log"))
    time.sleep(0.5)
    assert int(ok(s, src["id"], "wc -l < /workspace/log")) > n1
    # copy_env: the original's env values.
    r = s.request("POST", f"/api/v1/devboxes/{src['id']}/fork", json_body={"count": 1, "copy_env": True})
    assert r.status_code == 201, r.text
    f = s.wait_state(r.json()["devboxes"][0]["id"])
    assert ok(s, f["id"], "printenv KEEP").strip() == "kept-value"
    ok(s, src["id"], "pkill -f '[l]ine %d'; true")
    for d in forks + [f, src]:
        s.request("DELETE", f"/api/v1/devboxes/{d['id']}")


def test_bad_input_names_the_field_and_other_users_see_nothing(server):
    s = server
    src = ready(s, {"name": "bad-input"})
    base = f"/api/v1/devboxes/{src['id']}"
    cases = [
        ("POST", base + "/snapshots", {"name": ""}, 422, "name"),
        ("POST", base + "/snapshots", {"name": "x" * 65}, 422, "name"),
        ("POST", base + "/fork", {"count": 0}, 422, "count"),
        ("POST", base + "/fork", {"count": 33}, 422, "count"),
        ("POST", base + "/fork", {"count": 1, "name": ""}, 422, "name"),
        ("POST", "/api/v1/devboxes", {"name": "x", "snapshot": "nope-unknown"}, 422, "snapshot"),
        ("POST", "/api/v1/devboxes", {"name": "x", "snapshot": "nope", "image": "debian"}, 422, "snapshot"),
    ]
    for method, path, body, status, field in cases:
        r = s.request(method, path, json_body=body)
        assert r.status_code == status, (path, body, r.text)
        assert r.json()["error"]["field"] == field, (path, body, r.text)
    r = s.request("POST", base + "/snapshots", json_body={"nom": "x"})
    assert r.status_code in (400, 422) and "name" in r.text, r.text
    assert s.request("GET", "/api/v1/snapshots/snap_doesnotexist00000").status_code == 404
    assert s.request("POST", "/api/v1/devboxes/dbx_nope/snapshots", json_body={"name": "a"}).status_code == 404

    snap = snapshot(s, src["id"], "mine")
    # Names are unique per user.
    r = s.request("POST", base + "/snapshots", json_body={"name": "mine"})
    assert r.status_code == 409 and "mine" in r.json()["error"]["message"], r.text
    # Another user: 404 for the snapshot by id and by name, and for creates from it.
    bob = bearer("bob-snapshots")
    for path in [f"/api/v1/snapshots/{snap['id']}", "/api/v1/snapshots/mine"]:
        assert s.request("GET", path, bearer=bob).status_code == 404
        assert s.request("DELETE", path, bearer=bob).status_code == 404
    assert s.request("GET", "/api/v1/snapshots", bearer=bob).json() == {"snapshots": []}
    r = s.request("POST", "/api/v1/devboxes", json_body={"name": "steal", "snapshot": snap["id"]}, bearer=bob)
    assert r.status_code == 422 and r.json()["error"]["field"] == "snapshot"
    assert s.request("POST", base + "/snapshots", json_body={"name": "b"}, bearer=bob).status_code == 404
    assert s.request("POST", base + "/fork", json_body={"count": 1}, bearer=bob).status_code == 404
    # Bob may use the same name for a snapshot of his own.
    bobs = ready(s, {"name": "bobs"}, bearer_token=bob)
    assert snapshot(s, bobs["id"], "mine", bearer_token=bob)["name"] == "mine"
    for d in [bobs]:
        s.request("DELETE", f"/api/v1/devboxes/{d['id']}", bearer=bob)
    for x in s.request("GET", "/api/v1/snapshots", bearer=bob).json()["snapshots"]:
        assert s.request("DELETE", f"/api/v1/snapshots/{x['id']}", bearer=bob).status_code == 204
    s.request("DELETE", f"/api/v1/devboxes/{src['id']}")
    s.request("DELETE", f"/api/v1/snapshots/{snap['id']}")


def test_delete_keeps_layers_until_the_last_box_made_from_it_is_destroyed(server):
    s = server
    src = ready(s, {"name": "del-src"})
    ok(s, src["id"], "echo keep > /workspace/k")
    snap = snapshot(s, src["id"], "to-delete")
    b = ready(s, {"name": "del-user", "snapshot": snap["id"]})
    assert s.request("DELETE", f"/api/v1/snapshots/{snap['id']}").status_code == 204
    assert s.request("GET", f"/api/v1/snapshots/{snap['id']}").status_code == 404
    assert all(x["id"] != snap["id"] for x in s.request("GET", "/api/v1/snapshots").json()["snapshots"])
    assert s.request("DELETE", f"/api/v1/snapshots/{snap['id']}").status_code == 404
    r = s.request("POST", "/api/v1/devboxes", json_body={"name": "late", "snapshot": snap["id"]})
    assert r.status_code == 422
    # The box made from it keeps working, across a stop and a start.
    assert all(os.path.isdir(d) for d in layer_dirs(snap["id"]))
    assert ok(s, b["id"], "cat /workspace/k") == "keep\n"
    assert s.request("POST", f"/api/v1/devboxes/{b['id']}/stop").status_code == 200
    assert s.request("POST", f"/api/v1/devboxes/{b['id']}/start").status_code == 200
    assert ok(s, b["id"], "cat /workspace/k") == "keep\n"
    # Its name is free again.
    again = snapshot(s, src["id"], "to-delete")
    assert again["id"] != snap["id"]
    assert s.request("DELETE", f"/api/v1/devboxes/{b['id']}").status_code == 204
    deadline = time.time() + 20
    while time.time() < deadline and any(os.path.exists(d) for d in layer_dirs(snap["id"])):
        time.sleep(0.2)
    assert not any(os.path.exists(d) for d in layer_dirs(snap["id"])), "the deleted snapshot's layers outlived its last box"
    assert s.request("DELETE", f"/api/v1/snapshots/{again['id']}").status_code == 204
    assert not any(os.path.exists(d) for d in layer_dirs(again["id"]))
    # A stopped box is snapshotted too (its disk mounted for the copy only).
    assert s.request("POST", f"/api/v1/devboxes/{src['id']}/stop").status_code == 200
    stopped = snapshot(s, src["id"], "of-stopped")
    c = ready(s, {"name": "from-stopped", "snapshot": stopped["id"]})
    assert ok(s, c["id"], "cat /workspace/k") == "keep\n"
    assert s.request("POST", f"/api/v1/devboxes/{src['id']}/start").status_code == 200
    assert ok(s, src["id"], "cat /workspace/k") == "keep\n"
    for d in [c, src]:
        s.request("DELETE", f"/api/v1/devboxes/{d['id']}")
    assert s.request("DELETE", f"/api/v1/snapshots/{stopped['id']}").status_code == 204


def test_quota_refuses_with_a_clear_error(store_ready, fresh_server):
    s = fresh_server(env={"DEVBOX_SNAPSHOT_QUOTA": "10M"}).start()
    src = ready(s, {"name": "quota"})
    ok(s, src["id"], "head -c 2000000 /dev/urandom > /workspace/a")
    first = snapshot(s, src["id"], "q1")
    ok(s, src["id"], "head -c 7000000 /dev/urandom > /workspace/b")
    r = s.request("POST", f"/api/v1/devboxes/{src['id']}/snapshots", json_body={"name": "q2"})
    assert r.status_code == 507, r.text
    assert "DEVBOX_SNAPSHOT_QUOTA" in r.json()["error"]["message"] and "10 MiB" in r.json()["error"]["message"]
    assert [x["name"] for x in s.request("GET", "/api/v1/snapshots").json()["snapshots"]] == ["q1"]
    leftovers = [n for n in os.listdir(os.path.join(STORE, "layers")) if n.startswith("snap-")]
    assert all(os.path.isdir(d) for d in layer_dirs(first["id"]))
    r = s.request("POST", f"/api/v1/devboxes/{src['id']}/fork", json_body={"count": 2})
    assert r.status_code == 507, r.text
    assert [n for n in os.listdir(os.path.join(STORE, "layers")) if n.startswith("snap-")] == leftovers
    assert s.request("DELETE", f"/api/v1/snapshots/{first['id']}").status_code == 204
    assert snapshot(s, src["id"], "q2")["size_bytes"] > 9_000_000
    for x in s.request("GET", "/api/v1/snapshots").json()["snapshots"]:
        s.request("DELETE", f"/api/v1/snapshots/{x['id']}")


def test_restart_keeps_snapshots_and_boxes_made_from_them(store_ready, fresh_server):
    s = fresh_server().start()
    src = ready(s, {"name": "restart-src"})
    ok(s, src["id"], "echo survives > /workspace/s; echo rootfs > /usr/local/share/r")
    snap = snapshot(s, src["id"], "restart")
    b = ready(s, {"name": "restart-user", "snapshot": "restart"})
    ok(s, b["id"], "echo mine >> /workspace/s")
    s.stop()
    s.start()
    assert s.request("GET", "/api/v1/snapshots/restart").json() == snap
    b = s.wait_state(b["id"], states=("ready",))
    assert ok(s, b["id"], "cat /workspace/s /usr/local/share/r") == "survives\nmine\nrootfs\n"
    c = ready(s, {"name": "after-restart", "snapshot": snap["id"]})
    assert ok(s, c["id"], "cat /workspace/s /usr/local/share/r") == "survives\nrootfs\n"
    for d in [b, c, src]:
        s.request("DELETE", f"/api/v1/devboxes/{d['id']}")
    assert s.request("DELETE", f"/api/v1/snapshots/{snap['id']}").status_code == 204
