import os
import subprocess

import pytest

from devbox_harness import DATA_DIRS, Server, crun_bundles


@pytest.fixture(scope="session", autouse=True)
def host_ready():
    subprocess.run([os.path.join(os.path.dirname(__file__), "../../scripts/cgroup-fix.sh")], check=True)
    yield
    leaked = {name: bundle for name, bundle in crun_bundles().items()
              if any(bundle.startswith(d + "/") for d in DATA_DIRS)}
    assert not leaked, f"tests leaked containers: {leaked}"


@pytest.fixture(scope="module")
def server():
    s = Server().start()
    yield s
    s.close()


@pytest.fixture
def fresh_server():
    """A server of one's own (for restarts, crashes, special configuration)."""
    made = []

    def make(**kw) -> Server:
        s = Server(**kw)
        made.append(s)
        return s

    yield make
    for s in reversed(made):  # later servers may share an earlier one's data dir
        s.close()
