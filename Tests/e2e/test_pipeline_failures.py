"""Provisioning failure branches against real crun that no other e2e test provokes. Each has a
fast twin in Tests/DevboxServiceTests/PipelineFakeRuntimeTests.swift (the fake runtime)."""
import os

import pytest

from devbox_harness import containers_of


@pytest.mark.parametrize("command", ["kill -TERM 1; sleep 5", "kill -KILL $PPID; sleep 5"], ids=["init", "setup-shell"])
def test_a_box_that_dies_under_a_setup_command_fails_the_step(server, command):
    """The box's init (or the setup shell that feeds it commands) goes away while a setup
    command runs: the step fails as "could not be started … not running", the later step is
    skipped, nothing of the box is left (PipelineFakeRuntimeTests.setupCannotStart)."""
    d = server.create({"name": "dies", "setup_commands": [command, "echo never"]})
    d = server.wait_state(d["id"], timeout=60)
    assert d["state"] == "failed", d
    assert d["error"]["operation"] == "run_setup_commands", d
    assert d["error"]["message"].startswith("setup command 1 could not be started: "), d
    assert "not running" in d["error"]["message"], d
    ops = {o["name"]: o["status"] for o in server.operations(d["id"])}
    assert ops == {"provision": "succeeded", "inject_credentials": "skipped", "clone_repositories": "skipped",
                   "run_setup_commands": "failed", "publish_access": "skipped"}, ops
    assert not containers_of(d["id"])


def test_a_create_the_runtime_refuses_fails_provision(fresh_server):
    """crun's runtime cannot make the box (here: a plan whose disk, 16 TiB, is past ext4's
    largest file): `provision` fails as "the sandbox could not be started", every later step is
    skipped, nothing of the box is left (PipelineFakeRuntimeTests.createFails)."""
    s = fresh_server(env={"DEVBOX_PLANS": "huge:256:1:64:16777216,small:1024:1:512", "DEVBOX_WARM_POOL": "0"}).start()
    d = s.wait_state(s.create({"name": "huge", "plan": "huge", "setup_commands": ["true"]})["id"], timeout=60)
    assert d["state"] == "failed", d
    assert d["error"]["operation"] == "provision", d
    assert d["error"]["message"].startswith("the sandbox could not be started: "), d
    assert [o["status"] for o in s.operations(d["id"])] == ["failed", "skipped", "skipped", "skipped", "skipped"]
    assert not containers_of(d["id"])
    boxes = os.path.join(s.data_dir, "boxes")
    assert not [n for n in os.listdir(boxes) if n.endswith(d["id"])], os.listdir(boxes)
    # the service still creates boxes of the other plans
    assert s.wait_state(s.create({"name": "fine"})["id"], timeout=60)["state"] == "ready"
    s.delete_all()
