"""`devbox serve` start-up as a new user meets it: the first token, ports, signals."""
import os
import re
import signal
import subprocess
import time

import requests

from devbox_harness import BIN, Server

# No warm pool: these tests are about the service process, and 20 idle boxes per serve cost.
NO_POOL = {"DEVBOX_WARM_POOL": "0"}


def spawn_serve(s: Server, stdout) -> subprocess.Popen:
    """A serve on `s`'s data dir and ports with the given stdout (no token made beforehand)."""
    os.makedirs(s.data_dir, exist_ok=True)
    s.proc = subprocess.Popen(
        [BIN, "serve", "--data-dir", s.data_dir, "--http", f"127.0.0.1:{s.http_port}",
         "--ssh", f"127.0.0.1:{s.ssh_port}"],
        stdout=stdout, stderr=open(s.log_path, "ab"), env=s.env(), stdin=subprocess.DEVNULL)
    return s.proc


def read_until(path: str, pattern: str, proc: subprocess.Popen, timeout: float = 30) -> re.Match:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(path, errors="replace") as f:
            m = re.search(pattern, f.read())
        if m:
            return m
        assert proc.poll() is None, f"serve exited with {proc.returncode}"
        time.sleep(0.05)
    with open(path, errors="replace") as f:
        raise AssertionError(f"{pattern!r} never appeared in stdout:\n{f.read()}")


def test_first_token_reaches_redirected_stdout_with_the_real_address(fresh_server):
    """stdout to a file (as under a service manager): the one-time token must be there while
    serve runs — not stuck in a stdio buffer — and its curl example must work as printed."""
    s = fresh_server(token="unused", env=NO_POOL)  # Server.start is not used: no token may exist before
    out = os.path.join(os.path.dirname(s.data_dir), "stdout.txt")
    with open(out, "wb") as f:
        spawn_serve(s, f)
    s.wait_healthy()
    m = read_until(out, r"curl -s -H 'X-Provider-Token: (dbx_pt_\S+)' (\S+)/api/v1/users/me", s.proc)
    token, base = m.group(1), m.group(2)
    assert base == s.base, f"curl example names {base}, serve listens on {s.base}"
    assert "HOST:PORT" not in open(out).read()
    r = requests.get(base + "/api/v1/users/me", headers={"X-Provider-Token": token}, timeout=10)
    assert r.status_code == 200, r.text
    s.token = token  # for close()'s clean-up


def test_first_token_reaches_a_pipe(fresh_server):
    s = fresh_server(token="unused", env=NO_POOL)
    r, w = os.pipe()
    spawn_serve(s, w)
    os.close(w)
    os.set_blocking(r, False)
    got, deadline = b"", time.time() + 30
    while b"/api/v1/users/me" not in got and time.time() < deadline:
        try:
            got += os.read(r, 4096)
        except BlockingIOError:
            time.sleep(0.05)
    os.close(r)
    assert b"X-Provider-Token: dbx_pt_" in got and f"{s.base}/api/v1/users/me".encode() in got, got
    s.token = re.search(rb"X-Provider-Token: (dbx_pt_\S+)", got).group(1).decode()
    s.wait_healthy()


def test_no_token_printed_when_one_exists(fresh_server):
    s = fresh_server(env=NO_POOL)
    s.token = s.create_token()
    out = os.path.join(os.path.dirname(s.data_dir), "stdout.txt")
    with open(out, "wb") as f:
        spawn_serve(s, f)
    s.wait_healthy()
    time.sleep(0.3)
    assert "dbx_pt_" not in open(out).read()
