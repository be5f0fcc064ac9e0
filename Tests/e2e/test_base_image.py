"""DEVBOX_BASE_IMAGE=/path: every box on one root directory given by path (here the store's
Debian layer, built once per machine by `devbox image build`), instead of the store's images."""
import os
import subprocess
import time

import pytest

from devbox_harness import BIN, Server


@pytest.fixture(scope="module")
def image_server(tmp_path_factory):
    t0 = time.time()
    p = subprocess.run([BIN, "image", "build", "--if-missing"], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    image = p.stdout.strip()
    assert ":" not in image and os.path.isdir(image + "/usr"), image   # one layer: a root directory
    print(f"image ready in {time.time() - t0:.0f} s")
    s = Server(env={"DEVBOX_BASE_IMAGE": image})
    s.start()
    yield s, image
    s.close()


def test_boxes_run_on_the_given_root(image_server):
    s, image = image_server
    assert image in s.log()
    d = s.create({"name": "img", "env": {"FOO": "bar"},
                  "setup_commands": ["cat /etc/debian_version", "git --version", "test -x /usr/lib/openssh/sftp-server",
                                     "echo $FOO > /workspace/foo"]})
    d = s.wait_state(d["id"])
    assert d["state"] == "ready", s.operations(d["id"])
    assert d["image"] == image
    out = s.operations(d["id"])[3]["output"]
    assert "12." in out and "git version" in out
    # nothing of the host that the image does not contain: the host's toolchain, its users' files
    r = s.exec_in_box(d["id"], "test -e /opt/swift || test -e /work || test -e /usr/bin/wrk; echo $?")
    assert r.stdout.strip() == "1"
    assert s.exec_in_box(d["id"], "cat /workspace/foo").stdout == "bar\n"
    # the image itself is never written by a box
    s.exec_in_box(d["id"], "echo changed > /etc/motd")
    assert "changed" not in open(os.path.join(image, "etc/motd")).read()


def test_a_base_image_that_is_no_root_refuses_the_start(tmp_path):
    s = Server(env={"DEVBOX_BASE_IMAGE": str(tmp_path)})
    s.start(wait=False)
    assert s.proc.wait(timeout=30) != 0
    assert "is not a root filesystem" in s.log()
    s.close()
