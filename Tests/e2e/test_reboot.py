"""Devboxes after a host reboot: the boxes are gone (containers, mounts, network namespaces,
the service's nft table and tmpfs), the database still says `ready`. The service brings them
back up at start, on their files, isolated as before; it never shows `ready` for a box that
does not run."""
import json
import os
import subprocess

from devbox_harness import crun_containers


def exec_box(s, devbox_id, command):
    r = s.request("POST", f"/api/v1/devboxes/{devbox_id}/exec", json_body={"command": command, "timeout_seconds": 30})
    assert r.status_code == 200, r.text
    return r.json()


def simulate_reboot(s):
    """What a reboot takes: every process of the service and its boxes, every mount, netns,
    link, nft table and route of theirs. What stays: the data directory on disk."""
    s.proc.kill()
    s.proc.wait()
    prefix = s.cgroup_parent_name() + "-"
    for c in crun_containers():
        if c.startswith(prefix):
            subprocess.run(["crun", "delete", "-f", c], check=True)
    boxes = os.path.join(s.data_dir, "boxes")
    mounts = [l.split()[4] for l in open("/proc/self/mountinfo").read().splitlines() if l.split()[4].startswith(boxes + "/")]
    for m in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=True)
    tag = s.cgroup_parent_name()
    for link in os.listdir("/sys/class/net"):
        if link.startswith(tag):
            subprocess.run(["ip", "link", "del", link], check=False)
    subprocess.run(["nft", "delete", "table", "inet", tag], check=False)
    cidr = open(os.path.join(boxes, ".network")).read().strip()
    subprocess.run(["ip", "route", "del", "unreachable", cidr, "proto", "219"], check=False)


def test_ready_boxes_come_back_after_a_reboot(fresh_server):
    s = fresh_server(env={"DEVBOX_WARM_POOL": "1"}).start()
    s.wait_pool_full()
    pooled = s.wait_state(s.create({"name": "pooled", "env": {"GREETING": "hello"}})["id"])
    cold = s.wait_state(s.create({"name": "cold", "network": {"egress": "deny_all"}})["id"])
    stopped = s.wait_state(s.create({"name": "stopped"})["id"])
    for d in (pooled, cold, stopped):
        assert d["state"] == "ready", d
    assert exec_box(s, pooled["id"], "echo kept > /workspace/note; echo root > /root/note")["exit_code"] == 0
    assert s.request("POST", f"/api/v1/devboxes/{stopped['id']}/stop").status_code == 200

    simulate_reboot(s)
    assert not [c for c in crun_containers() if c.startswith(s.cgroup_parent_name() + "-")]

    s.start()
    for d in (pooled, cold):
        got = s.get(d["id"])
        assert got["state"] == "ready", got
        out = exec_box(s, d["id"], "cat /workspace/note /root/note 2>/dev/null; echo $GREETING; ls /sys/class/net | tr '\\n' ' '")
        assert out["exit_code"] == 0, out
    out = exec_box(s, pooled["id"], "cat /workspace/note /root/note; echo $GREETING")
    assert out["stdout"] == "kept\nroot\nhello\n", out
    # Its network came back, isolation included: the service's port is refused from inside.
    probe = ("import socket; s=socket.socket(); s.settimeout(3); "
             f"print(s.connect_ex(('127.0.0.1', {s.http_port})))")
    assert exec_box(s, cold["id"], ["python3", "-c", probe])["stdout"].strip() == "111"
    assert s.get(cold["id"])["network"]["egress"] == "deny_all"
    # A stopped devbox stays stopped, and starts when asked.
    assert s.get(stopped["id"])["state"] == "stopped"
    assert s.request("POST", f"/api/v1/devboxes/{stopped['id']}/start").status_code == 200
    assert exec_box(s, stopped["id"], "true")["exit_code"] == 0


def test_a_box_that_cannot_come_back_is_stopped_not_ready(fresh_server):
    s = fresh_server(env={"DEVBOX_WARM_POOL": "0"}).start()
    d = s.wait_state(s.create({"name": "broken"})["id"])
    simulate_reboot(s)
    # Its bundle is gone: it cannot run again.
    bundle = os.path.join(s.data_dir, "boxes", s.box_name(d["id"]), "config.json")
    os.remove(bundle)
    s.start()
    got = s.get(d["id"])
    assert got["state"] == "stopped", got
    r = s.request("POST", f"/api/v1/devboxes/{d['id']}/exec", json_body={"command": "true"})
    assert r.status_code == 409
