"""The warm pool: boxes started ahead of demand (DEVBOX_WARM_POOL), handed to creates, refilled,
swept after a crash, and never visible as anything but the devbox's own box."""
import concurrent.futures as cf
import os
import signal
import socket
import time

from devbox_harness import Server, containers_of, crun_containers


def pool_boxes(s: Server) -> set[str]:
    prefix = s.cgroup_parent_name() + "-wp_"
    return {c for c in crun_containers() if c.startswith(prefix)}


def provision_output(s: Server, devbox_id: str) -> str:
    return [o for o in s.operations(devbox_id) if o["name"] == "provision"][0]["output"]


def run(s: Server, devbox_id: str, command: str) -> dict:
    r = s.request("POST", f"/api/v1/devboxes/{devbox_id}/exec", json_body={"command": command})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_pooled_box_becomes_the_devbox_and_the_pool_refills(fresh_server):
    host = socket.gethostname()
    s = fresh_server(env={"DEVBOX_WARM_POOL": "3"}).start()
    assert s.wait_pool_full() == {"size": 3, "ready": 3}
    before = pool_boxes(s)
    assert len(before) == 3
    secret = "s3cr3t-" + os.urandom(8).hex()
    d = s.create({"name": "warm", "env": {"GREETING": "hello there", "API_SECRET": secret},
                  "setup_commands": ["echo \"$GREETING\"; hostname; cat /etc/hostname; grep -c \"127.0.1.1.$(hostname)$\" /etc/hosts"]})
    d = s.wait_state(d["id"])
    assert d["state"] == "ready", s.operations(d["id"])
    assert "taken from the warm pool" in provision_output(s, d["id"])
    setup = [o for o in s.operations(d["id"]) if o["name"] == "run_setup_commands"][0]["output"]
    assert setup.endswith(f"hello there\n{d['id']}\n{d['id']}\n1\n"), setup
    # The box is one of the pooled ones, under its own name; everything addresses it by the devbox id.
    name = s.box_name(d["id"])
    assert name in before and containers_of(d["id"]) == [name]
    r = run(s, d["id"], "hostname; printf %s \"$API_SECRET\" | wc -c; ls /workspace")
    assert r["exit_code"] == 0 and r["stdout"].splitlines()[:2] == [d["id"], str(len(secret))]
    # The secret is in the box's env (the contract) and nowhere on the host side of it.
    box_dir = os.path.join(s.data_dir, "boxes", name)
    assert secret.encode() not in open(os.path.join(box_dir, "config.json"), "rb").read()
    # The pool refills with new boxes once creates pause.
    assert s.wait_pool_full() == {"size": 3, "ready": 3}
    after = pool_boxes(s) - {name}
    assert len(after) == 3 and (before - {name}) < after
    # Stop and start: the same box runs again, still under the devbox's hostname.
    assert s.request("POST", f"/api/v1/devboxes/{d['id']}/stop").status_code == 200
    assert s.request("POST", f"/api/v1/devboxes/{d['id']}/start").json()["state"] == "ready"
    assert run(s, d["id"], "hostname")["stdout"] == d["id"] + "\n"
    # Delete: box, alias and directory go; the pool's own boxes stay.
    assert s.request("DELETE", f"/api/v1/devboxes/{d['id']}").status_code == 204
    assert not containers_of(d["id"])
    assert not os.path.lexists(os.path.join(s.data_dir, "boxes", s.cgroup_parent_name() + "-" + d["id"]))
    assert pool_boxes(s) == after
    s.stop()
    assert secret not in s.log()
    # A clean stop destroys the idle pool: nothing of the service is left.
    assert s.service_leftovers() == {"containers": [], "mounts": [], "dirs": [], "cgroups": []}
    assert socket.gethostname() == host


def test_a_burst_larger_than_the_pool_mixes_warm_and_cold_boxes(fresh_server):
    s = fresh_server(env={"DEVBOX_WARM_POOL": "2"}).start()
    s.wait_pool_full()
    with cf.ThreadPoolExecutor(6) as ex:
        ids = list(ex.map(lambda k: s.create({"name": f"burst-{k}", "setup_commands": ["hostname > /workspace/name"]})["id"],
                          range(6)))
    done = [s.wait_state(i) for i in ids]
    assert [d["state"] for d in done] == ["ready"] * 6
    warm = [i for i in ids if "taken from the warm pool" in provision_output(s, i)]
    cold = [i for i in ids if provision_output(s, i).startswith("sandbox started")]
    assert len(warm) + len(cold) == 6 and warm and len(cold) >= 2
    for i in ids:
        assert s.exec_in_box(i, "cat /workspace/name; hostname").stdout == f"{i}\n{i}\n"
    for i in cold:
        assert s.box_name(i) == s.cgroup_parent_name() + "-" + i


def test_no_pool_when_turned_off(fresh_server):
    s = fresh_server(env={"DEVBOX_WARM_POOL": "0"}).start()
    assert s.warm_pool() == {"size": 0, "ready": 0}
    d = s.wait_state(s.create({"name": "cold", "setup_commands": ["true"]})["id"])
    assert d["state"] == "ready"
    assert provision_output(s, d["id"]).startswith("sandbox started")
    assert s.container_id(d["id"]) == s.cgroup_parent_name() + "-" + d["id"]
    time.sleep(0.5)
    assert not pool_boxes(s)


def test_a_bad_pool_size_is_refused_by_name(fresh_server):
    for value in ("many", "-1", "257"):
        s = fresh_server(env={"DEVBOX_WARM_POOL": value})
        s.start(wait=False)
        assert s.proc.wait(timeout=60) != 0
        assert "DEVBOX_WARM_POOL" in s.log()


def test_kill9_keeps_claimed_boxes_and_sweeps_the_idle_pool(fresh_server):
    s = fresh_server(env={"DEVBOX_WARM_POOL": "3"}).start()
    s.wait_pool_full()
    d = s.wait_state(s.create({"name": "kept", "setup_commands": ["echo kept > /workspace/mark"]})["id"])
    assert d["state"] == "ready" and "taken from the warm pool" in provision_output(s, d["id"])
    claimed = s.box_name(d["id"])
    s.wait_pool_full()
    idle = pool_boxes(s) - {claimed}
    assert len(idle) == 3
    s.stop(signal.SIGKILL)

    s2 = fresh_server(data_dir=s.data_dir, token=s.token, env={"DEVBOX_WARM_POOL": "3"})
    s2.log_path = s.log_path
    s2.start()
    # The claimed box still serves its devbox; the pool boxes nobody had taken are gone.
    assert s2.get(d["id"])["state"] == "ready"
    assert s2.box_name(d["id"]) == claimed
    assert run(s2, d["id"], "cat /workspace/mark; hostname")["stdout"] == f"kept\n{d['id']}\n"
    assert not idle & set(crun_containers())
    assert s2.wait_pool_full() == {"size": 3, "ready": 3}
    assert not idle & pool_boxes(s2)
    s2.delete_all()
    s2.stop()
    assert s2.service_leftovers() == {"containers": [], "mounts": [], "dirs": [], "cgroups": []}
