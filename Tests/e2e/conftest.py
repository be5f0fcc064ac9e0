import os
import subprocess

import pytest

from devbox_harness import Server, crun_containers


@pytest.fixture(scope="session", autouse=True)
def host_ready():
    subprocess.run([os.path.join(os.path.dirname(__file__), "../../scripts/cgroup-fix.sh")], check=True)
    before = set(crun_containers())
    yield
    leaked = set(crun_containers()) - before
    assert not leaked, f"tests leaked containers: {leaked}"


@pytest.fixture(scope="module")
def server():
    s = Server().start()
    yield s
    s.delete_all()
    s.stop()
    if os.path.isdir(s.data_dir):
        subprocess.run(["rm", "-rf", os.path.dirname(s.data_dir)], check=False)


@pytest.fixture
def fresh_server():
    """A server of one's own (for restarts, crashes, special configuration)."""
    made = []

    def make(**kw) -> Server:
        s = Server(**kw)
        made.append(s)
        return s

    yield make
    for s in made:
        if s.proc and s.proc.poll() is None:
            s.delete_all()
            s.stop()
        if s.tmp:
            subprocess.run(["rm", "-rf", s.tmp], check=False)
