"""An RSA user key, the most common key on developer machines, stays refused (the SSH gateway
verifies ed25519 and ECDSA only), but the refusal tells the user what works and how to get it."""
import os
import re
import subprocess
import tempfile

import pytest

from devbox_harness import BIN, Server

README = os.path.join(os.path.dirname(__file__), "../../README.md")


@pytest.fixture(scope="module")
def server():
    s = Server(env={"DEVBOX_WARM_POOL": "0"}).start()  # no box is needed here
    yield s
    s.close()


def rsa_pub() -> str:
    path = os.path.join(tempfile.mkdtemp(), "id_rsa")
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", path], check=True)
    return path + ".pub"


def assert_useful(message: str) -> None:
    assert "ssh-rsa" in message, message                # what was wrong
    assert "ed25519" in message and "ECDSA" in message  # what works
    assert "ssh-keygen -t ed25519" in message           # the one command that makes a key


def test_rsa_refused_by_the_api_with_the_key_types_and_the_command(server):
    r = server.request("PUT", "/api/v1/users/me/ssh-key", json_body={"public_key": open(rsa_pub()).read()})
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "public_key"
    assert_useful(r.json()["error"]["message"])


def test_rsa_refused_by_the_cli_in_one_line(server):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVBOX_")}
    env.update({"DEVBOX_URL": server.base, "DEVBOX_PROVIDER_TOKEN": server.token})
    r = subprocess.run([BIN, "ssh-key", "set", rsa_pub()], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("devbox: error: "), r.stderr
    assert_useful(lines[0])


def test_readme_says_so_where_it_shows_ssh_key_set():
    text = open(README).read()
    first = text.index("devbox ssh-key set")
    line = text[first:text.index("\n", first)]
    assert re.search(r"RSA.*refused", line) and "ssh-keygen -t ed25519" in line, line
