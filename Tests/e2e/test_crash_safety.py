"""Crash safety: kill -9 while ten devboxes provision, restart, nothing is lost or orphaned."""
import os
import signal
import subprocess
import time

from devbox_harness import Server, box_hostname, containers_of


def leftovers(server: Server, devbox_ids: list[str]) -> dict:
    """What is still on the host of these devboxes, however their boxes are named (a box
    taken from the warm pool carries the pool's name): containers, box directories and
    aliases, mounts and cgroups of those directories."""
    boxes = os.path.join(server.data_dir, "boxes")
    names = os.listdir(boxes) if os.path.isdir(boxes) else []
    mine = [n for n in names if not n.startswith(".") and (  # (.mask, and trash being removed)
        any(n.endswith(i) for i in devbox_ids) or box_hostname(os.path.join(boxes, n)) in devbox_ids)]
    mounts = [l.split()[4] for l in open("/proc/self/mountinfo").read().splitlines()
              if any(l.split()[4].startswith(os.path.join(boxes, n) + "/") for n in mine)]
    cgroups = [os.path.join(p, c) for p in server.cgroup_parents() for c in os.listdir(p) if c in mine]
    return {"mounts": mounts, "containers": [c for i in devbox_ids for c in containers_of(i)], "cgroups": cgroups,
            "dirs": mine}


def test_kill9_while_ten_provision_then_restart(fresh_server):
    s = fresh_server().start()
    ready = s.wait_state(s.create({"name": "was-ready", "setup_commands": ["echo ok > /workspace/mark"]})["id"])
    assert ready["state"] == "ready"
    ids = [s.create({"name": f"crash-{i}", "setup_commands": ["sleep 1", "echo done"]})["id"] for i in range(10)]
    time.sleep(0.6)  # some are mid-provision, some mid-setup, some still requested
    s.stop(signal.SIGKILL)

    s2 = fresh_server(data_dir=s.data_dir, token=s.token)
    s2.log_path = s.log_path
    s2.start()
    final = {i: s2.wait_state(i, timeout=120) for i in ids}
    for i, d in final.items():
        assert d["state"] in ("ready", "failed"), d
        if d["state"] == "failed":
            assert d["error"]["message"], d
            assert not containers_of(i)
        else:
            assert [o["status"] for o in s2.operations(i)].count("succeeded") >= 3
    # the devbox that was ready before the crash still works
    assert s2.get(ready["id"])["state"] == "ready"
    assert s2.exec_in_box(ready["id"], "cat /workspace/mark").stdout == "ok\n"
    # deleting everything leaves no container, mount, cgroup or box directory
    s2.delete_all()
    assert leftovers(s2, ids + [ready["id"]]) == {"mounts": [], "containers": [], "cgroups": [], "dirs": []}
    # and once the service stops (its idle warm pool goes with it), nothing of it at all
    s2.stop()
    assert s2.service_leftovers() == {"containers": [], "mounts": [], "dirs": [], "cgroups": []}


def test_startup_sweeps_orphans(fresh_server):
    s = fresh_server().start()
    d = s.wait_state(s.create({"name": "orphan"})["id"])
    assert d["state"] == "ready"
    s.stop(signal.SIGKILL)
    # the devbox row vanishes behind the service's back: its sandbox is now an orphan
    import sqlite3
    with sqlite3.connect(os.path.join(s.data_dir, "devbox.sqlite")) as db:
        db.execute("UPDATE devboxes SET state = 'destroyed' WHERE id = ?", (d["id"],))
    assert containers_of(d["id"])
    s2 = fresh_server(data_dir=s.data_dir, token=s.token).start()
    assert leftovers(s2, [d["id"]]) == {"mounts": [], "containers": [], "cgroups": [], "dirs": []}
    assert "swept" in s2.log()


def test_sigterm_finishes_the_step_in_flight(fresh_server):
    s = fresh_server().start()
    d = s.create({"name": "graceful", "setup_commands": ["sleep 2", "echo second"]})
    deadline = time.time() + 30
    while {o["name"]: o["status"] for o in s.operations(d["id"])}["run_setup_commands"] != "running":
        assert time.time() < deadline
        time.sleep(0.05)
    t0 = time.time()
    assert s.stop(signal.SIGTERM) == 0
    assert time.time() - t0 < 15
    s2 = fresh_server(data_dir=s.data_dir, token=s.token).start()
    d = s2.wait_state(d["id"])
    assert d["state"] == "ready", s2.operations(d["id"])
    assert "second" in s2.operations(d["id"])[3]["output"]


def test_one_serve_per_data_dir(fresh_server):
    """The serve is the only writer of its database (its devbox cache relies on it): a second
    serve on the same data dir exits at once with a clear error; the first is unaffected, and
    after it is killed -9 a new serve starts (the lock dies with the process)."""
    s = fresh_server().start()
    d = s.wait_state(s.create({"name": "first"})["id"])
    assert s.get(d["id"])["state"] == "ready"  # read through the cache
    second = fresh_server(data_dir=s.data_dir, token=s.token)
    second.log_path = s.log_path + ".second"
    second.start(wait=False)
    assert second.proc.wait(timeout=30) != 0
    assert "another devbox serve is already using the data directory" in second.log()
    assert s.get(d["id"])["state"] == "ready"
    s.stop(signal.SIGKILL)
    s2 = fresh_server(data_dir=s.data_dir, token=s.token).start()
    assert s2.get(d["id"])["state"] == "ready"
    s2.delete_all()
    assert s2.get(d["id"])["state"] == "destroyed"
