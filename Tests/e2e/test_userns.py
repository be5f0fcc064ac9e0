"""Every box in a user namespace of its own (issue 18), attacker-style, over the real service:
box root is not host root, files the box writes belong to its own id range on the host, what
the service places in a box (files API, env file, scp/sftp, /workspace) shows the right owners
inside, two boxes never share a range, a service restart keeps a box's files usable. Pooled
and cold boxes alike."""
import json
import os
import subprocess
from urllib.parse import quote

import pytest

from devbox_harness import Server
from test_ssh_gateway import KEY_DIRS, client_opts, make_key, new_session

FIRST_BASE = 1 << 28
SIZE = 65536


def init_pid(s: Server, devbox_id: str) -> int:
    out = subprocess.run(["crun", "state", s.container_id(devbox_id)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["pid"]


def box_exec(s: Server, devbox_id: str, command: str) -> dict:
    r = s.request("POST", f"/api/v1/devboxes/{devbox_id}/exec", json_body={"command": command})
    assert r.status_code == 200, r.text
    return r.json()


def uid_map(s: Server, devbox_id: str) -> tuple[int, int, int]:
    r = box_exec(s, devbox_id, "cat /proc/self/uid_map")
    inside, outside, count = (int(x) for x in r["stdout"].split())
    return inside, outside, count


def host_owner(pid: int, path: str) -> tuple[int, int]:
    """Owner of a box path as the host sees it (through the box init's root)."""
    st = os.lstat(f"/proc/{pid}/root{path}")
    return st.st_uid, st.st_gid


def host_ids(pid: int) -> tuple[list[int], list[int]]:
    uid = gid = []
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("Uid:"):
            uid = [int(x) for x in line.split()[1:]]
        if line.startswith("Gid:"):
            gid = [int(x) for x in line.split()[1:]]
    return uid, gid


def box_processes(s: Server, devbox_id: str) -> list[int]:
    name = "/" + s.container_id(devbox_id)
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cg = open(f"/proc/{p}/cgroup").read()
        except OSError:
            continue
        if any(line.endswith(name) or (name + "/") in line for line in cg.splitlines()):
            out.append(int(p))
    return out


def check_box(s: Server, devbox_id: str) -> int:
    """The checks every box must pass; returns the base of its range."""
    inside, base, count = uid_map(s, devbox_id)
    assert inside == 0 and count == SIZE and base >= FIRST_BASE, (inside, base, count)
    # Host accounts never get such ids.
    for line in open("/etc/passwd"):
        assert not base <= int(line.split(":")[2]) < base + SIZE
    pid = init_pid(s, devbox_id)
    uids, gids = host_ids(pid)
    assert set(uids) == {base} and set(gids) == {base}, (uids, gids)
    r = box_exec(s, devbox_id, "id -u; echo hi > /root/mine; mkdir -p /workspace/w && echo x > /workspace/w/f; "
                               "chown 1000:1000 /workspace/w/f; setsid sleep 30 >/dev/null 2>&1 < /dev/null &")
    assert r["exit_code"] == 0, r
    lines = r["stdout"].split()
    assert lines[0] == "0"
    assert host_owner(pid, "/root/mine") == (base, base)
    assert host_owner(pid, "/workspace/w") == (base, base)
    assert host_owner(pid, "/workspace/w/f") == (base + 1000, base + 1000)
    # Every process of the box (its init, what exec started) runs as the mapped uid on the host.
    members = box_processes(s, devbox_id)
    assert pid in members and len(members) >= 2, members
    for p in members:
        assert set(host_ids(p)[0]) == {base}, (p, host_ids(p))
    # What the service placed: /, /workspace, the env file, /etc/hostname are the box root's.
    r = box_exec(s, devbox_id, "stat -c '%u:%g %n' / /workspace /etc/devbox/env /etc/hostname /etc/hosts")
    assert r["stdout"].split("\n")[:-1] == [f"0:0 {p}" for p in ["/", "/workspace", "/etc/devbox/env", "/etc/hostname", "/etc/hosts"]], r
    # No new namespace or mount for box root.
    r = box_exec(s, devbox_id, "unshare -U true; echo u=$?; unshare -m true; echo m=$?; unshare -n true; echo n=$?; "
                               "mount -t tmpfs x /mnt; echo t=$?; mount -t proc p /mnt; echo p=$?")
    out = r["stdout"]
    for k in ["u", "m", "n", "t", "p"]:
        assert f"{k}=0" not in out, out
    # Its own network namespace, owned by its user namespace: sysfs is the box's.
    r = box_exec(s, devbox_id, "ls /sys/class/net")
    assert sorted(r["stdout"].split()) == ["eth0", "lo"], r
    # Its own cgroup namespace: its cgroup is its root.
    r = box_exec(s, devbox_id, "cat /proc/self/cgroup")
    assert all(line.endswith(":/") for line in r["stdout"].split()), r
    for ns in ["user", "cgroup", "net", "mnt"]:
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
    # The image is not chowned: the host's view of a lower file is still root's.
    r = box_exec(s, devbox_id, "stat -c %u /usr/bin/env")
    assert r["stdout"] == "0\n"
    return base


@pytest.fixture(scope="module")
def pooled():
    s = Server(env={"DEVBOX_WARM_POOL": "2"}).start()
    yield s
    s.close()


def test_pooled_and_cold_boxes_run_in_their_own_user_namespaces(pooled, server):
    warm = pooled.wait_state(pooled.create({"name": "un-warm", "env": {"TOKEN_X": "s3cr3t"}})["id"])
    assert warm["state"] == "ready", warm
    cold = server.wait_state(server.create({"name": "un-cold", "env": {"TOKEN_X": "s3cr3t"}})["id"])
    assert cold["state"] == "ready", cold
    b1 = check_box(pooled, warm["id"])
    b2 = check_box(server, cold["id"])
    # Two boxes (here even of two serves on two data dirs) never share a range.
    assert b1 != b2
    r = box_exec(pooled, warm["id"], "xargs -0 -a /etc/devbox/env -n1 echo | grep TOKEN_X")
    assert r["stdout"] == "TOKEN_X=s3cr3t\n"


def test_boxes_of_one_serve_get_different_ranges_and_cannot_read_each_other(server):
    ids = [server.create({"name": f"un-r{i}"})["id"] for i in range(2)]
    boxes = [server.wait_state(i) for i in ids]
    assert all(b["state"] == "ready" for b in boxes), boxes
    bases = [uid_map(server, i)[1] for i in ids]
    assert bases[0] != bases[1] and abs(bases[0] - bases[1]) >= SIZE
    box_exec(server, ids[0], "echo private > /root/p && chmod 600 /root/p")
    # A process of box 1's range (as an escaped box process would be) cannot read box 0's file.
    pid0 = init_pid(server, ids[0])
    path = f"/proc/{pid0}/root/root/p"
    r = subprocess.run(["setpriv", f"--reuid={bases[1]}", f"--regid={bases[1]}", "--clear-groups", "cat", path],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "private" not in r.stdout


def test_files_api_and_scp_show_the_box_root_as_owner(server):
    d = server.wait_state(server.create({"name": "un-files"})["id"])
    assert d["state"] == "ready", d
    box = d["id"]
    base = uid_map(server, box)[1]
    pid = init_pid(server, box)
    r = server.request("PUT", f"/api/v1/devboxes/{box}/files?path={quote('/workspace/api/deep/f.txt', safe='')}", data=b"via api")
    assert r.status_code in (200, 201), r.text
    assert host_owner(pid, "/workspace/api") == (base, base)
    assert host_owner(pid, "/workspace/api/deep/f.txt") == (base, base)
    r = box_exec(server, box, "stat -c '%u:%g' /workspace/api /workspace/api/deep/f.txt && echo more >> /workspace/api/deep/f.txt")
    assert r["exit_code"] == 0 and r["stdout"] == "0:0\n0:0\n", r
    # scp (sftp-server runs in the box) writes as the box's root.
    key, pub = make_key()
    assert server.request("PUT", "/api/v1/users/me/ssh-key", json_body={"public_key": pub}).status_code == 204
    user = new_session(server, box)
    src = os.path.join(KEY_DIRS[-1], "payload")
    with open(src, "wb") as f:
        f.write(b"scp payload\n")
    r = subprocess.run(["scp", *client_opts(key), "-P", str(server.ssh_port), src, f"{user}@127.0.0.1:/workspace/scp.txt"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert host_owner(pid, "/workspace/scp.txt") == (base, base)
    r = box_exec(server, box, "stat -c '%u:%g' /workspace/scp.txt")
    assert r["stdout"] == "0:0\n"


def test_a_restart_keeps_a_boxs_range_and_files(fresh_server):
    s = fresh_server().start()
    d = s.wait_state(s.create({"name": "un-restart"})["id"])
    assert d["state"] == "ready", d
    box = d["id"]
    base = uid_map(s, box)[1]
    box_exec(s, box, "echo kept > /root/k && chmod 600 /root/k && echo w > /workspace/k")
    s.stop()
    s.start()
    d = s.wait_state(box, states=("ready",), timeout=60)
    assert d["state"] == "ready", d
    assert uid_map(s, box)[1] == base
    r = box_exec(s, box, "cat /root/k && echo again >> /workspace/k && stat -c %u /root/k /workspace/k")
    assert r["exit_code"] == 0 and r["stdout"] == "kept\n0\n0\n", r
    # stop / start through the API keeps it too.
    assert s.request("POST", f"/api/v1/devboxes/{box}/stop").status_code in (200, 202)
    s.wait_state(box, states=("stopped",))
    assert s.request("POST", f"/api/v1/devboxes/{box}/start").status_code in (200, 202)
    assert s.wait_state(box, states=("ready",))["state"] == "ready"
    assert uid_map(s, box)[1] == base
    r = box_exec(s, box, "cat /root/k")
    assert r["stdout"] == "kept\n"
