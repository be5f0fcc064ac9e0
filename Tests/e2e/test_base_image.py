"""`devbox image build`: a debootstrapped Debian base image that serve then uses for boxes."""
import os
import subprocess
import time

import pytest

from devbox_harness import BIN, Server


@pytest.fixture(scope="module")
def image_server(tmp_path_factory):
    s = Server()
    os.makedirs(s.data_dir)
    t0 = time.time()
    p = subprocess.run([BIN, "image", "build", "--data-dir", s.data_dir], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    image = p.stdout.strip()
    assert image == os.path.join(s.data_dir, "images", "debian-bookworm")
    print(f"image built in {time.time() - t0:.0f} s")
    s.start()
    yield s, image
    s.close()


def test_boxes_run_on_the_built_image(image_server):
    s, image = image_server
    assert "debian-bookworm" in s.log()
    d = s.create({"name": "img", "env": {"FOO": "bar"},
                  "setup_commands": ["cat /etc/debian_version", "git --version", "test -x /usr/lib/openssh/sftp-server",
                                     "echo $FOO > /workspace/foo"]})
    d = s.wait_state(d["id"])
    assert d["state"] == "ready", s.operations(d["id"])
    out = s.operations(d["id"])[3]["output"]
    assert "12." in out and "git version" in out
    # nothing of the host that the image does not contain: the host's toolchain, its users' files
    r = s.exec_in_box(d["id"], "test -e /opt/swift || test -e /work || test -e /usr/bin/wrk; echo $?")
    assert r.stdout.strip() == "1"
    assert s.exec_in_box(d["id"], "cat /workspace/foo").stdout == "bar\n"
    # the image itself is never written by a box
    s.exec_in_box(d["id"], "echo changed > /etc/motd")
    assert "changed" not in open(os.path.join(image, "etc/motd")).read()
