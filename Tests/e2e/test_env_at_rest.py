"""The box env file (AI tokens in credential_mode env, the create's env values) is never on the
host's disk in plaintext: it lives on a tmpfs of the service's own (<data>/boxes/.secrets),
bind-mounted read-only at /etc/devbox in the box. A raw scan of every file under the data dir
— the database and its WAL, every box directory, the bytes of each box's disk image —
finds neither a token nor an env value while the devbox is ready, after stop, after a serve
restart, or after destroy; the tmpfs is gone once the service stops with no box left."""
import hashlib
import os
import time

import pytest

from secret_scan import encodings, find

CHUNK = 1 << 20


def mounts() -> dict[str, str]:
    """Mount point → filesystem type, as this process sees them."""
    out = {}
    for line in open("/proc/self/mountinfo").read().splitlines():
        f = line.split()
        out[f[4]] = f[f.index("-") + 1]
    return out


def scan_blob_file(path: str, secrets: list[bytes], keys: list[bytes]) -> list[str]:
    """Hits in one file, reading only its data extents (a box's disk image is sparse)."""
    hits = []
    longest = max(len(e) for s in secrets for e in encodings(s)) + 4096
    with open(path, "rb") as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        off = 0
        while off < size:
            try:
                start = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break
            try:
                end = os.lseek(fd, start, os.SEEK_HOLE)
            except OSError:
                end = size
            pos = start
            while pos < end:
                os.lseek(fd, pos, os.SEEK_SET)
                blob = os.read(fd, min(CHUNK + longest, end - pos))
                if not blob:
                    break
                for s in secrets:
                    for h in find(blob, s, keys):
                        hits.append(f"{h} at {pos}")
                pos += CHUNK
            off = end
    return hits


def scan_data_dir(data_dir: str, secrets: list[bytes], keys: list[bytes]) -> dict:
    """Every regular file under the data dir that is on disk: mounts of memory (tmpfs: the
    secrets and the mask layer) and of other views (overlay: a box's merged root, whose
    layers are scanned where they live) are not walked."""
    m = mounts()
    found = {}
    for root, dirs, files in os.walk(data_dir):
        for d in list(dirs):
            p = os.path.join(root, d)
            if m.get(p) in ("tmpfs", "overlay", "proc", "sysfs"):
                dirs.remove(d)
        for name in files:
            p = os.path.join(root, name)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            try:
                hits = scan_blob_file(p, secrets, keys)
            except FileNotFoundError:
                # Deleted meanwhile: a destroyed box's directory is renamed to .trash-… and
                # removed in the background (callers that need none left wait for that first).
                continue
            if hits:
                found[p] = hits
    return found


def key_of(s) -> bytes:
    return open(os.path.join(s.data_dir, "encryption.key"), "rb").read().strip()


def exec_box(s, devbox_id: str, command: str) -> dict:
    r = s.request("POST", f"/api/v1/devboxes/{devbox_id}/exec", json_body={"command": command, "timeout_seconds": 60})
    assert r.status_code == 200, r.text
    return r.json()


def sha(v: str) -> str:
    return hashlib.sha256(v.encode()).hexdigest()


def secrets_mount(s) -> str:
    return os.path.join(s.data_dir, "boxes", ".secrets")


@pytest.mark.parametrize("pool", ["0", "1"], ids=["cold", "warm-pool"])
def test_no_plaintext_secret_on_disk_at_any_time(fresh_server, pool):
    s = fresh_server(env={"DEVBOX_WARM_POOL": pool}).start()
    if pool == "1":
        s.wait_pool_full()
    claude = "sk-ant-rest-" + os.urandom(24).hex()
    value = "env-rest-" + os.urandom(24).hex()
    d = s.create({"name": "at-rest", "credential_mode": "env", "env": {"MY_SECRET": value},
                  "credential_profile": {"inject_claude_token": True}},
                 headers={"X-Claude-Token": claude})
    d = s.wait_state(d["id"])
    assert d["state"] == "ready", s.operations(d["id"])
    if pool == "1":
        assert "warm pool" in s.operations(d["id"])[0]["output"], s.operations(d["id"])
    both = [claude.encode(), value.encode()]

    # The box has both, read-only, from the tmpfs.
    out = exec_box(s, d["id"], 'printf "%s %s\\n" "$(printf %s "$ANTHROPIC_API_KEY" | sha256sum | cut -c1-64)" '
                               '"$(printf %s "$MY_SECRET" | sha256sum | cut -c1-64)"; '
                               "tr '\\0' '\\n' < /etc/devbox/env | grep -c '^MY_SECRET='; "
                               "touch /etc/devbox/x 2>/dev/null && echo writable; "
                               "echo EVIL=1 >> /etc/devbox/env 2>/dev/null && echo writable; "
                               "grep ' /etc/devbox ' /proc/self/mounts | cut -d' ' -f3,4 | cut -d, -f1")
    assert out["stdout"] == f"{sha(claude)} {sha(value)}\n1\ntmpfs ro\n", out
    assert mounts().get(secrets_mount(s)) == "tmpfs"
    name = s.box_name(d["id"])
    assert os.path.isfile(os.path.join(secrets_mount(s), name, "env"))

    # While ready: no AI token anywhere on disk (not even encrypted); the env value is in the
    # database only as a Fernet token (kept while the devbox lives), never in plaintext.
    assert scan_data_dir(s.data_dir, [claude.encode()], [key_of(s)]) == {}
    assert scan_data_dir(s.data_dir, both, []) == {}

    # After stop: the env file stays (on the tmpfs), nothing reaches the disk.
    assert s.request("POST", f"/api/v1/devboxes/{d['id']}/stop").status_code == 200
    assert os.path.isfile(os.path.join(secrets_mount(s), name, "env"))
    assert scan_data_dir(s.data_dir, both, []) == {}
    assert scan_data_dir(s.data_dir, [claude.encode()], [key_of(s)]) == {}
    assert s.request("POST", f"/api/v1/devboxes/{d['id']}/start").status_code == 200
    out = exec_box(s, d["id"], 'printf %s "$ANTHROPIC_API_KEY" | sha256sum | cut -c1-64; printf "%s\\n" "$MY_SECRET"')
    assert out["stdout"] == f"{sha(claude)}\n{value}\n", out

    # A serve restart keeps the env file (the tmpfs stays while a box has one): the token too.
    s.stop()
    assert mounts().get(secrets_mount(s)) == "tmpfs"
    s.start()
    out = exec_box(s, d["id"], 'printf %s "$ANTHROPIC_API_KEY" | sha256sum | cut -c1-64; printf "%s\\n" "$MY_SECRET"')
    assert out["stdout"] == f"{sha(claude)}\n{value}\n", out
    assert scan_data_dir(s.data_dir, both, []) == {}

    # After destroy: no copy anywhere, the tmpfs directory included.
    assert s.request("DELETE", f"/api/v1/devboxes/{d['id']}").status_code in (202, 204)
    assert not os.path.exists(os.path.join(secrets_mount(s), name))
    assert scan_data_dir(s.data_dir, both, [key_of(s)]) == {}
    # Once the background removal of the destroyed box's directory is done, scan again: the
    # files it removed were scanned while they existed, nothing else may hold a copy.
    boxes = os.path.join(s.data_dir, "boxes")
    deadline = time.time() + 30
    while any(e.startswith(".trash-") for e in os.listdir(boxes)) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(e.startswith(".trash-") for e in os.listdir(boxes)), os.listdir(boxes)
    assert scan_data_dir(s.data_dir, both, [key_of(s)]) == {}
    found = {p: h for p, h in ((p, find(open(p, "rb").read(), sec, [key_of(s)])) for p in [s.log_path] for sec in both) if h}
    assert found == {}

    # Stopped with no box left (the pool's are destroyed at shutdown): the tmpfs is unmounted.
    s.delete_all()
    s.stop()
    assert secrets_mount(s) not in mounts()


def test_reboot_rebuilds_the_env_from_the_database(fresh_server):
    """After a host reboot the tmpfs is empty: the box starts again with the user's env values
    (encrypted rows) and without env-mode AI tokens, which are kept nowhere else."""
    import subprocess
    s = fresh_server(env={"DEVBOX_WARM_POOL": "0"}).start()
    claude = "sk-ant-boot-" + os.urandom(24).hex()
    value = "env-boot-" + os.urandom(24).hex()
    d = s.wait_state(s.create({"name": "boot", "credential_mode": "env", "env": {"MY_SECRET": value},
                               "credential_profile": {"inject_claude_token": True}},
                              headers={"X-Claude-Token": claude})["id"])
    assert d["state"] == "ready", d
    assert s.request("POST", f"/api/v1/devboxes/{d['id']}/stop").status_code == 200
    # What a reboot does to the secrets: the tmpfs (and everything in it) is gone.
    s.stop()
    subprocess.run(["umount", secrets_mount(s)], check=True)
    s.start()
    assert s.request("POST", f"/api/v1/devboxes/{d['id']}/start").status_code == 200
    out = exec_box(s, d["id"], 'printf "%s|%s\\n" "$MY_SECRET" "$ANTHROPIC_API_KEY"')
    assert out["stdout"] == f"{value}|\n", out
    assert "rebuilt from the database" in s.log()
    assert scan_data_dir(s.data_dir, [value.encode(), claude.encode()], []) == {}
