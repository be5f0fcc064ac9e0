"""run_setup_commands reports the step's own start and end, whether it succeeds or fails."""
from datetime import datetime

import pytest

from devbox_harness import Server


@pytest.fixture(scope="module")
def server():
    s = Server(env={"DEVBOX_WARM_POOL": "0"}).start()
    yield s
    s.close()


def t(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@pytest.mark.parametrize("command,state", [("sleep 0.4", "ready"), ("sleep 0.4; exit 3", "failed")])
def test_setup_step_times_are_the_steps(server, command, state):
    d = server.wait_state(server.create({"name": "times", "setup_commands": [command]})["id"])
    assert d["state"] == state, d
    ops = {o["name"]: o for o in server.operations(d["id"])}
    setup = ops["run_setup_commands"]
    took = (t(setup["finished_at"]) - t(setup["started_at"])).total_seconds()
    assert 0.35 <= took < 10, f"a 0.4 s setup is shown as {took} s: {setup}"
    assert t(ops["clone_repositories"]["finished_at"]) <= t(setup["started_at"])
    if state == "ready":
        assert t(setup["finished_at"]) <= t(ops["publish_access"]["started_at"])
    server.request("DELETE", f"/api/v1/devboxes/{d['id']}")
