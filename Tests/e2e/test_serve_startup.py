"""`devbox serve` start-up as a new user meets it: the first token, ports, signals."""
import os
import re
import signal
import socket
import subprocess
import time

import pytest
import requests

from devbox_harness import BIN, Server, containers_of

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


# -- ports: bound first, a taken one ends the serve at once --------------------------------

def hold_port(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def run_until_exit(s: Server, timeout: float = 10) -> tuple[int, float, str]:
    """Starts serve on `s` (stderr captured) and waits for it to end by itself."""
    os.makedirs(s.data_dir, exist_ok=True)
    t0 = time.monotonic()
    p = subprocess.run(
        [BIN, "serve", "--data-dir", s.data_dir, "--http", f"127.0.0.1:{s.http_port}",
         "--ssh", f"127.0.0.1:{s.ssh_port}"],
        capture_output=True, text=True, env=s.env(), stdin=subprocess.DEVNULL, timeout=timeout)
    return p.returncode, time.monotonic() - t0, p.stderr


@pytest.mark.parametrize("which", ["http", "ssh"])
def test_a_taken_port_ends_serve_at_once_with_one_line_and_frees_the_lock(fresh_server, which):
    s = fresh_server(env=NO_POOL)
    s.token = s.create_token()
    port = s.http_port if which == "http" else s.ssh_port
    holder = hold_port(port)
    try:
        code, took, err = run_until_exit(s)
    finally:
        holder.close()
    assert code != 0
    assert took < 8, f"serve took {took:.1f}s to give up"
    # the one line, and no error logged besides it (debug lines may mention the cause)
    lines = [l for l in err.splitlines() if l.startswith("devbox: error") or re.match(r"\S+ (error|critical) ", l)]
    assert lines == [f"devbox: error: cannot listen on 127.0.0.1:{port} ({which.upper()}): Address already in use"], err
    assert "claiming jobs failed" not in err
    # what preparing the host took (the mask layer's tmpfs) is given back
    assert s.service_leftovers() == {"containers": [], "mounts": [], "dirs": [], "cgroups": []}
    # serve.lock is free: a serve on the same data dir starts (the port is free again now)
    s.start()
    assert s.request("GET", "/api/v1/users/me").status_code == 200


def test_a_taken_port_leaves_a_ready_box_as_it_was(fresh_server):
    """A restart that cannot bind touches no box: the ready one keeps running, and the next
    serve finds it ready and working."""
    s = fresh_server(env=NO_POOL).start()
    box = s.wait_state(s.create({"name": "keep", "setup_commands": ["echo kept > /workspace/mark"]})["id"])
    assert box["state"] == "ready"
    assert s.stop() == 0
    running = containers_of(box["id"])
    assert running
    holder = hold_port(s.http_port)
    try:
        code, _, err = run_until_exit(s)
    finally:
        holder.close()
    assert code != 0 and f"127.0.0.1:{s.http_port}" in err
    assert containers_of(box["id"]) == running
    s.start()
    assert s.get(box["id"])["state"] == "ready"
    assert s.exec_in_box(box["id"], "cat /workspace/mark").stdout == "kept\n"


def test_listeners_are_bound_before_the_start_up_sweep(fresh_server):
    """kill -9 leaves an idle warm pool behind; the next serve sweeps it only once both its
    ports are bound (the log says in which order)."""
    s = fresh_server(env={"DEVBOX_WARM_POOL": "2"}).start()
    s.wait_pool_full()
    s.stop(signal.SIGKILL)
    s.log_path = s.log_path + ".restart"
    s.start()
    s.wait_pool_full()
    log = s.log()

    def at(needle: str) -> int:
        i = log.find(needle)
        assert i >= 0, f"{needle!r} not in the log:\n{log}"
        return i

    swept = at("swept leftover sandboxes")
    assert at("SSH gateway listening") < swept
    assert at("HTTP listening") < swept


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.8, 1.5])
def test_sigterm_during_start_up_ends_serve_within_seconds(fresh_server, delay):
    s = fresh_server(env={"DEVBOX_WARM_POOL": "4"})
    s.token = s.create_token()
    s.start(wait=False)
    time.sleep(delay)
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    try:
        s.proc.wait(timeout=8)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"serve ignored SIGTERM sent {delay}s after start:\n{s.log()}")
    assert time.monotonic() - t0 < 8
    # nothing of it is left, and the lock is free for the next serve
    assert s.service_leftovers() == {"containers": [], "mounts": [], "dirs": [], "cgroups": []}, s.log()
    s.start()


def test_sigterm_while_a_setup_command_runs_ends_serve_within_seconds(fresh_server):
    """Draining waits for the step in flight, but not for ever: past the grace period the
    rest is cancelled. The next serve fails the devbox clearly (setup commands are not
    idempotent, so they are not run again)."""
    s = fresh_server(env=NO_POOL).start()
    d = s.create({"name": "long-setup", "setup_commands": ["sleep 120"]})
    deadline = time.time() + 60
    while time.time() < deadline:
        ops = {o["name"]: o["status"] for o in s.operations(d["id"])}
        if ops["run_setup_commands"] == "running":
            break
        time.sleep(0.05)
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    try:
        s.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"serve still draining 20 s after SIGTERM:\n{s.log()[-3000:]}")
    took = time.monotonic() - t0
    assert took < 15, f"serve took {took:.1f}s to end"
    s.start()
    failed = s.wait_state(d["id"])
    assert failed["state"] == "failed", failed
    assert "setup commands" in failed["error"]["message"], failed
