"""Disk quotas (issue 18): each plan's disk covers a box's writable layer and /workspace
together (an ext4 image on a loop device, Sources/Sandbox/BoxDisk.swift). Past it a write fails
with ENOSPC and the box carries on; the host is guarded by DEVBOX_MIN_FREE_DISK (507); /tmp and
/run are capped; nothing of a disk (loop device, image) is left after destroy or a stop."""
import os
import signal
import time

from devbox_harness import Server, loop_devices_under

GIB = 1 << 30
PLANS = "tiny:512:1:256:1024,small:1024:1:512"


def exec_box(s, devbox_id, command, timeout=120):
    r = s.request("POST", f"/api/v1/devboxes/{devbox_id}/exec", json_body={"command": command, "timeout_seconds": timeout})
    assert r.status_code == 200, r.text
    return r.json()


def host_free(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def box_loops(s, expect=None):
    """Loop devices of boxes' disks (not of the ready disks the service keeps in boxes/.disks).
    The kernel unbinds a device on a workqueue after its filesystem's unmount: up to 5 s for
    the count to come down to `expect`."""
    deadline = time.time() + 5
    while True:
        loops = [l for l in loop_devices_under(s.data_dir) if "/.disks/" not in l]
        if expect is None or len(loops) <= expect or time.time() >= deadline:
            return loops
        time.sleep(0.05)


def box_dir(s, devbox_id):
    return os.path.join(s.data_dir, "boxes", s.box_name(devbox_id))


def test_a_write_past_the_plan_disk_fails_and_the_box_carries_on(fresh_server):
    s = fresh_server(env={"DEVBOX_PLANS": PLANS, "DEVBOX_WARM_POOL": "0"}).start()
    d = s.wait_state(s.create({"name": "quota", "plan": "tiny"})["id"])
    assert d["state"] == "ready", d
    other = s.wait_state(s.create({"name": "other", "plan": "tiny"})["id"])
    assert other["state"] == "ready", other
    # df in the box shows the plan's disk for / (overlayfs shows its upper layer) and /workspace.
    out = exec_box(s, d["id"], "df -k / /workspace | tail -n 2 | awk '{print $2}'")
    sizes = [int(x) for x in out["stdout"].split()]
    assert len(sizes) == 2 and all(900 * 1024 < k <= 1024 * 1024 for k in sizes), out

    free_before = host_free(s.data_dir)
    out = exec_box(s, d["id"], "dd if=/dev/zero of=/workspace/big bs=1M count=2048 2>&1; echo status=$?")
    assert "No space left on device" in out["stdout"] and "status=0" not in out["stdout"], out
    # The writable layer shares the quota: nothing fits in /root either now.
    out = exec_box(s, d["id"], "dd if=/dev/zero of=/root/more bs=1M count=16 2>&1; echo status=$?")
    assert "No space left on device" in out["stdout"], out
    # The host paid at most the quota (other tests on the machine may write meanwhile: the
    # image's own allocation is the exact figure).
    image = os.path.join(box_dir(s, d["id"]), "disk.img")
    assert os.stat(image).st_blocks * 512 <= GIB
    assert free_before - host_free(s.data_dir) <= GIB + 256 * (1 << 20)
    # The box still answers; the other box's disk is untouched.
    assert exec_box(s, d["id"], "echo alive")["stdout"] == "alive\n"
    out = exec_box(s, other["id"], "dd if=/dev/zero of=/workspace/f bs=1M count=64 2>&1 && echo ok")
    assert out["stdout"].rstrip().endswith("ok"), out
    # Freeing space in the box makes room again.
    out = exec_box(s, d["id"], "rm -f /workspace/big /root/more && echo x > /workspace/x && cat /workspace/x")
    assert out["stdout"] == "x\n", out

    # Stop unmounts the disk (its loop device goes); start brings it back with its files.
    assert len(box_loops(s)) == 2
    assert s.request("POST", f"/api/v1/devboxes/{d['id']}/stop").status_code == 200
    assert len(box_loops(s, expect=1)) == 1
    assert s.request("POST", f"/api/v1/devboxes/{d['id']}/start").status_code == 200
    assert exec_box(s, d["id"], "cat /workspace/x")["stdout"] == "x\n"

    # Destroy: loop device and image gone.
    for box in (d, other):
        directory = box_dir(s, box["id"])
        assert s.request("DELETE", f"/api/v1/devboxes/{box['id']}").status_code == 204
        assert not os.path.exists(os.path.join(directory, "disk.img"))
    assert box_loops(s, expect=0) == []


def test_tmp_and_run_are_capped(fresh_server):
    s = fresh_server(env={"DEVBOX_PLANS": PLANS, "DEVBOX_WARM_POOL": "0"}).start()
    d = s.wait_state(s.create({"name": "tmpcap", "plan": "tiny"})["id"])
    # Half and an eighth of the plan's 512 MiB.
    out = exec_box(s, d["id"], "df -k /tmp /run | tail -n 2 | awk '{print $2}'")
    assert out["stdout"].split() == [str(256 * 1024), str(64 * 1024)], out
    out = exec_box(s, d["id"], "dd if=/dev/zero of=/tmp/x bs=1M count=300 2>&1; echo status=$?; rm -f /tmp/x")
    assert "No space left on device" in out["stdout"], out
    assert exec_box(s, d["id"], "echo alive")["stdout"] == "alive\n"


def test_creates_are_refused_below_the_free_disk_floor(fresh_server):
    for floor in ("99.9%", "100TiB"):
        s = fresh_server(env={"DEVBOX_MIN_FREE_DISK": floor, "DEVBOX_WARM_POOL": "0"}).start()
        r = s.request("POST", "/api/v1/devboxes", json_body={"name": "nope"})
        assert r.status_code == 507, r.text
        err = r.json()["error"]
        assert err["code"] == "insufficient_storage" and "DEVBOX_MIN_FREE_DISK" in err["message"], err
        assert s.request("GET", "/api/v1/devboxes").json()["devboxes"] == []
        s.close()
    # The default (5 %) lets this machine create.
    s = fresh_server(env={"DEVBOX_MIN_FREE_DISK": "1GiB", "DEVBOX_WARM_POOL": "0"}).start()
    assert s.request("POST", "/api/v1/devboxes", json_body={"name": "yes"}).status_code == 202


def test_bad_settings_refuse_start(fresh_server):
    for env, needle in ((({"DEVBOX_MIN_FREE_DISK": "lots"}), "DEVBOX_MIN_FREE_DISK"),
                        (({"DEVBOX_MIN_FREE_DISK": "100%"}), "DEVBOX_MIN_FREE_DISK"),
                        (({"DEVBOX_PLANS": "x:512:1:256:10"}), "diskMiB")):
        s = fresh_server(env=env)
        s.start(wait=False)
        assert s.proc.wait(timeout=30) != 0
        assert needle in s.log(), s.log()


def test_pooled_boxes_have_their_disk_and_shutdown_leaves_none_idle(fresh_server):
    s = fresh_server(env={"DEVBOX_PLANS": PLANS, "DEVBOX_DEFAULT_PLAN": "tiny", "DEVBOX_WARM_POOL": "1"}).start()
    s.wait_pool_full()
    d = s.wait_state(s.create({"name": "pooled"})["id"])
    assert s.box_name(d["id"]).split("-", 1)[1].startswith("wp_"), "not taken from the pool"
    out = exec_box(s, d["id"], "df -k /workspace | tail -n 1 | awk '{print $2}'")
    assert 900 * 1024 < int(out["stdout"]) <= 1024 * 1024, out
    s.wait_pool_full()
    # SIGTERM: the idle pooled box and the ready disks go; the devbox's disk stays mounted.
    assert s.stop(signal.SIGTERM) == 0
    assert len(box_loops(s, expect=1)) == 1
    deadline = time.time() + 5
    while len(loop_devices_under(s.data_dir)) > 1 and time.time() < deadline:
        time.sleep(0.05)
    assert len(loop_devices_under(s.data_dir)) == 1, loop_devices_under(s.data_dir)
    disks = os.path.join(s.data_dir, "boxes", ".disks")
    assert not os.path.exists(disks) or os.listdir(disks) == []
    s.start()
    assert exec_box(s, d["id"], "echo back")["stdout"] == "back\n"
    assert s.request("DELETE", f"/api/v1/devboxes/{d['id']}").status_code == 204
