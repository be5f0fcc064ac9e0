"""The embedded SSH gateway, driven by the real OpenSSH clients (ssh, scp, sftp) and tmux."""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass

import pytest
import requests

from devbox_harness import Server, free_port

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")

DENIED = "Permission denied (publickey)"


KEY_DIRS: list[str] = []


def make_key(kind: str = "ed25519") -> tuple[str, str]:
    """A fresh key pair: (private key path, public key line); removed when the module ends."""
    d = tempfile.mkdtemp(prefix="devbox-sshkey-")
    KEY_DIRS.append(d)
    path = os.path.join(d, "id")
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", path, "-C", "e2e"], check=True)
    return path, open(path + ".pub").read().strip()


def client_opts(key: str) -> list[str]:
    return ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes",
            "-o", "ConnectTimeout=10", "-i", key]


@dataclass
class Login:
    server: Server
    key: str
    user: str

    def argv(self, *extra: str, command: str | None = None) -> list[str]:
        argv = ["ssh", *client_opts(self.key), "-p", str(self.server.ssh_port), *extra, f"{self.user}@127.0.0.1"]
        return argv + ([command] if command is not None else [])

    def run(self, command: str, *extra: str, input: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*extra, command=command), input=input, capture_output=True, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def popen(self, command: str | None, *extra: str, **kw) -> subprocess.Popen:
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen(self.argv(*extra, command=command), **kw)


def new_session(server: Server, box: str, ttl: int | None = None, token: str | None = None) -> str:
    body = {"ttl_seconds": ttl} if ttl is not None else None
    r = server.request("POST", f"/api/v1/devboxes/{box}/access/session", json_body=body, token=token)
    assert r.status_code == 201, r.text
    return r.json()["session_id"]


def connections(server: Server, box: str, session: str) -> int | None:
    r = server.request("GET", f"/api/v1/devboxes/{box}/access/sessions")
    assert r.status_code == 200, r.text
    for s in r.json()["sessions"]:
        if s["session_id"] == session:
            return s["connections"]
    return None


def wait_for(predicate, timeout: float = 10, interval: float = 0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError("condition not met")


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Env:
    server: Server
    box: str
    key: str
    login: Login


@pytest.fixture(scope="module")
def gw():
    # Sessions as short as 2 s, so expiry is testable.
    s = Server(env={"DEVBOX_SESSION_MIN_TTL": "2"}).start()
    key, pub = make_key()
    assert s.request("PUT", "/api/v1/users/me/ssh-key", json_body={"public_key": pub}).status_code == 204
    box = s.wait_state(s.create({"name": "ssh-e2e", "env": {"FOO": "bar from the devbox"}})["id"])
    assert box["state"] == "ready", box
    env = Env(server=s, box=box["id"], key=key, login=Login(s, key, new_session(s, box["id"])))
    yield env
    s.delete_all()
    s.stop()
    if s.tmp:
        subprocess.run(["rm", "-rf", s.tmp], check=False)
    for d in KEY_DIRS:
        shutil.rmtree(d, ignore_errors=True)


# -- exec ----------------------------------------------------------------------------------------

def test_exec_exit_codes_and_separate_stderr(gw):
    r = gw.login.run("echo out; echo err >&2; exit 3")
    assert r.returncode == 3, r
    assert r.stdout == b"out\n" and r.stderr == b"err\n"
    r = gw.login.run("true")
    assert r.returncode == 0 and r.stdout == b"" and r.stderr == b""
    r = gw.login.run("pwd; id -u")
    assert r.stdout.decode().split() == ["/workspace", "0"]
    assert gw.login.run("no-such-command-xyz").returncode == 127


def test_exit_signal_is_reported(gw):
    r = gw.login.run("kill -KILL $$", "-v")
    assert r.returncode == 255
    assert b"exit-signal" in r.stderr


def test_devbox_env_and_allowed_env_requests(gw):
    r = gw.login.run('echo "$FOO|$LANG|$LC_TIME|${SECRET_X-unset}"',
                     "-o", "SetEnv=LANG=C.UTF-8 LC_TIME=C SECRET_X=leak")
    assert r.returncode == 0, r
    assert r.stdout.decode().strip() == "bar from the devbox|C.UTF-8|C|unset"


def test_stdin_is_piped_with_eof(gw):
    data = os.urandom(3 * 1024 * 1024 + 17)
    r = gw.login.run("cat", input=data)
    assert r.returncode == 0 and r.stdout == data
    r = gw.login.run("wc -c", input=b"12345")
    assert r.stdout.strip() == b"5"


def test_large_output_arrives_intact(gw):
    # 50 MiB of random bytes on stdout, their hash on stderr.
    r = gw.login.run("head -c 52428800 /dev/urandom > /tmp/big && sha256sum /tmp/big | cut -c1-64 >&2 && cat /tmp/big")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) == 52428800
    assert hashlib.sha256(r.stdout).hexdigest() == r.stderr.decode().strip()


def test_slow_reader_does_not_make_the_gateway_buffer(gw):
    pid = gw.server.proc.pid
    total = 400 * 1024 * 1024
    p = gw.login.popen(f"head -c {total} /dev/zero", stdout=subprocess.PIPE)
    time.sleep(1)
    before = rss_kib(pid)
    time.sleep(3)  # nobody reads: the gateway must stop reading the process
    during = rss_kib(pid)
    got = 0
    while chunk := p.stdout.read(1 << 20):
        got += len(chunk)
    assert p.wait(timeout=120) == 0
    assert got == total
    assert during - before < 48 * 1024, f"gateway RSS grew {before} -> {during} KiB while the client did not read"


def test_slow_process_stdin_does_not_make_the_gateway_buffer(gw):
    pid = gw.server.proc.pid
    total = 300 * 1024 * 1024
    p = gw.login.popen("sleep 4; wc -c", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    before = rss_kib(pid)
    chunk = b"\0" * (1 << 20)
    t0 = time.time()
    try:
        for _ in range(total // len(chunk)):
            p.stdin.write(chunk)
            if time.time() - t0 > 2:
                break
    except BrokenPipeError:
        pytest.fail("the gateway dropped stdin")
    during = rss_kib(pid)
    p.stdin.close()
    out = p.stdout.read()
    assert p.wait(timeout=120) == 0
    assert int(out) > 0
    assert during - before < 48 * 1024, f"gateway RSS grew {before} -> {during} KiB while the box did not read"


# -- interactive shell -----------------------------------------------------------------------------

class Tmux:
    def __init__(self):
        self.sock = f"devbox-e2e-{uuid.uuid4().hex[:8]}"

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True, check=True).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "t")

    def wait_screen(self, needle: str, timeout: float = 15) -> str:
        try:
            return wait_for(lambda: needle in self.screen() and self.screen(), timeout)
        except TimeoutError:
            raise AssertionError(f"{needle!r} never appeared:\n{self.screen()}")

    def kill(self):
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_interactive_shell_tty_resize_and_ctrl_c(gw):
    t = Tmux()
    try:
        cmd = " ".join(f"'{a}'" for a in gw.login.argv("-tt"))
        t("new-session", "-d", "-s", "t", "-x", "100", "-y", "30", cmd)
        t.wait_screen("#")
        # Wait for the output, not for the echo of the typed line: "T42=" only appears once
        # the shell ran it.
        t("send-keys", "-t", "t", "tty; echo T$((6*7))=$TERM", "Enter")
        screen = t.wait_screen("T42=")
        assert "/dev/pts/" in screen, screen

        def size_line() -> str:
            h, w = t("display", "-p", "-t", "t", "#{pane_height} #{pane_width}").split()
            return f"{h} {w}"

        marker = uuid.uuid4().hex[:6]
        t("send-keys", "-t", "t", f"echo S{marker}=$(stty size)", "Enter")
        t.wait_screen(f"S{marker}={size_line()}")
        t("resize-window", "-t", "t", "-x", "120", "-y", "40")
        time.sleep(0.3)
        marker = uuid.uuid4().hex[:6]
        t("send-keys", "-t", "t", f"echo S{marker}=$(stty size)", "Enter")
        t.wait_screen(f"S{marker}={size_line()}")
        assert size_line().endswith(" 120")

        t("send-keys", "-t", "t", "clear; sleep 100", "Enter")
        time.sleep(1)
        t0 = time.time()
        t("send-keys", "-t", "t", "C-c")
        t("send-keys", "-t", "t", "echo rc=$?", "Enter")
        t.wait_screen("rc=130", timeout=5)
        assert time.time() - t0 < 5
        t("send-keys", "-t", "t", "exit", "Enter")
        wait_for(lambda: subprocess.run(["tmux", "-L", t.sock, "has-session", "-t", "t"],
                                        capture_output=True).returncode != 0, timeout=10)
    finally:
        t.kill()


def test_exec_with_forced_tty(gw):
    r = gw.login.run("tty; exit 4", "-tt")
    assert r.returncode == 4
    assert b"/dev/pts/" in r.stdout


# -- file transfer -----------------------------------------------------------------------------------

def scp_argv(gw, *args: str) -> list[str]:
    return ["scp", *client_opts(gw.key), "-P", str(gw.server.ssh_port), *args]


@pytest.mark.parametrize("legacy", [False, True], ids=["sftp-protocol", "scp-protocol"])
def test_scp_both_ways(gw, tmp_path, legacy):
    data = os.urandom(2 * 1024 * 1024 + 3)
    src = tmp_path / "up.bin"
    src.write_bytes(data)
    mode = ["-O"] if legacy else []
    remote = f"{gw.login.user}@127.0.0.1:/workspace/scp-{int(legacy)}.bin"
    r = subprocess.run(scp_argv(gw, *mode, str(src), remote), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = gw.login.run(f"sha256sum < /workspace/scp-{int(legacy)}.bin")
    assert r.stdout.decode().split()[0] == hashlib.sha256(data).hexdigest()
    back = tmp_path / "down.bin"
    r = subprocess.run(scp_argv(gw, *mode, remote, str(back)), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert back.read_bytes() == data


def test_sftp_batch(gw, tmp_path):
    data = os.urandom(1024 * 1024)
    (tmp_path / "s.bin").write_bytes(data)
    batch = tmp_path / "batch"
    batch.write_text(f"cd /workspace\nput {tmp_path}/s.bin sftp.bin\nls -l sftp.bin\n"
                     f"get sftp.bin {tmp_path}/back.bin\nrm sftp.bin\n")
    r = subprocess.run(["sftp", *client_opts(gw.key), "-P", str(gw.server.ssh_port), "-b", str(batch),
                        f"{gw.login.user}@127.0.0.1"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert b"sftp.bin" in r.stdout
    assert (tmp_path / "back.bin").read_bytes() == data
    assert gw.login.run("test -e /workspace/sftp.bin").returncode == 1


# -- port forwarding ---------------------------------------------------------------------------------

def test_local_forward_to_http_server_in_the_box(gw):
    port = free_port()
    r = gw.login.run(f"mkdir -p /workspace/www && echo hello-from-box > /workspace/www/index.html && "
                     f"cd /workspace/www && (nohup python3 -m http.server {port} --bind 127.0.0.1 "
                     f"> /dev/null 2>&1 & echo $! > /workspace/http.pid)")
    assert r.returncode == 0, r.stderr
    local = free_port()
    fwd = gw.login.popen(None, "-N", "-L", f"{local}:127.0.0.1:{port}")
    try:
        def fetch():
            try:
                return requests.get(f"http://127.0.0.1:{local}/index.html", timeout=2)
            except requests.RequestException:
                return None
        resp = wait_for(fetch, timeout=15, interval=0.2)
        assert resp.status_code == 200 and resp.text == "hello-from-box\n"
        # several requests, new channel each
        for _ in range(5):
            assert requests.get(f"http://127.0.0.1:{local}/index.html", timeout=5).text == "hello-from-box\n"
        # stdio forwarding: the client's EOF half-closes the socket, the reply still comes back
        r = subprocess.run(gw.login.argv("-W", f"localhost:{port}"), input=b"GET /index.html HTTP/1.0\r\n\r\n",
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(b"HTTP/1.0 200") and r.stdout.endswith(b"hello-from-box\n")
    finally:
        fwd.terminate()
        fwd.wait(timeout=10)
        gw.login.run("kill $(cat /workspace/http.pid)")


@pytest.mark.parametrize("target", ["http", "ssh", "10.0.0.1:80", "example.com:80", "0.0.0.0:22"])
def test_forward_refused_outside_loopback_and_to_service_ports(gw, target):
    if target == "http":
        target = f"127.0.0.1:{gw.server.http_port}"
    elif target == "ssh":
        target = f"localhost:{gw.server.ssh_port}"
    r = subprocess.run(gw.login.argv("-W", target), capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 255
    assert b"stdio forwarding failed" in r.stderr, r.stderr


# -- who gets in -----------------------------------------------------------------------------------

def test_wrong_key_unknown_session_and_other_users_session_are_denied(gw, tmp_path):
    other_key, _ = make_key()
    r = Login(gw.server, other_key, gw.login.user).run("true")
    assert r.returncode == 255 and DENIED in r.stderr.decode()
    for user in ["ses_doesnotexist", "root", gw.box]:
        r = Login(gw.server, gw.key, user).run("true")
        assert r.returncode == 255 and DENIED in r.stderr.decode(), user

    # A second provider (another user) with its own key, devbox and session.
    token2 = gw.server.create_token(name=f"other-{uuid.uuid4().hex[:6]}")
    key2, pub2 = make_key("ecdsa")
    r = gw.server.request("PUT", "/api/v1/users/me/ssh-key", json_body={"public_key": pub2}, token=token2)
    assert r.status_code == 204, r.text
    r = gw.server.request("POST", "/api/v1/devboxes", json_body={"name": "other"}, token=token2)
    assert r.status_code == 202, r.text
    box2 = r.json()["id"]
    try:
        deadline = time.time() + 120
        while gw.server.request("GET", f"/api/v1/devboxes/{box2}", token=token2).json()["state"] != "ready":
            assert time.time() < deadline
            time.sleep(0.1)
        ses2 = new_session(gw.server, box2, token=token2)
        assert Login(gw.server, key2, ses2).run("true").returncode == 0  # ECDSA works for its owner
        r = Login(gw.server, gw.key, ses2).run("true")
        assert r.returncode == 255 and DENIED in r.stderr.decode()
        r = Login(gw.server, key2, gw.login.user).run("true")
        assert r.returncode == 255 and DENIED in r.stderr.decode()
    finally:
        gw.server.request("DELETE", f"/api/v1/devboxes/{box2}", token=token2)


def test_revoked_session_is_denied_and_its_live_connection_cut(gw):
    ses = new_session(gw.server, gw.box)
    login = Login(gw.server, gw.key, ses)
    a = login.popen("sleep 30")
    b = login.popen("sleep 30")
    wait_for(lambda: connections(gw.server, gw.box, ses) == 2, timeout=15)
    r = gw.server.request("DELETE", f"/api/v1/devboxes/{gw.box}/access/session/{ses}")
    assert r.status_code == 204
    t0 = time.time()
    a.wait(timeout=5)
    b.wait(timeout=5)
    assert time.time() - t0 < 1.0, "revocation took longer than a second to cut the connections"
    assert a.returncode == 255 and b.returncode == 255
    r = login.run("true")
    assert r.returncode == 255 and DENIED in r.stderr.decode()
    # the processes of the cut connections are gone too
    wait_for(lambda: "sleep 30" not in gw.server.exec_in_box(gw.box, "ps -eo args").stdout, timeout=5)


def test_expired_session_is_denied_and_its_connection_closed(gw):
    ses = new_session(gw.server, gw.box, ttl=3)
    login = Login(gw.server, gw.key, ses)
    created = time.time()
    p = login.popen("sleep 30")
    p.wait(timeout=10)
    assert time.time() - created < 3 + 2.5
    assert p.returncode == 255
    r = login.run("true")
    assert r.returncode == 255 and DENIED in r.stderr.decode()


def test_deleting_the_devbox_cuts_its_connections(gw):
    box = gw.server.wait_state(gw.server.create({"name": "ssh-delete"})["id"])["id"]
    login = Login(gw.server, gw.key, new_session(gw.server, box))
    p = login.popen("sleep 30")
    wait_for(lambda: connections(gw.server, box, login.user) == 1, timeout=15)
    assert gw.server.request("DELETE", f"/api/v1/devboxes/{box}").status_code in (200, 202, 204)
    t0 = time.time()
    p.wait(timeout=10)
    assert time.time() - t0 < 2
    assert login.run("true").returncode == 255


def test_live_connections_are_counted(gw):
    ses = new_session(gw.server, gw.box)
    login = Login(gw.server, gw.key, ses)
    assert connections(gw.server, gw.box, ses) == 0
    p = login.popen("sleep 30")
    try:
        wait_for(lambda: connections(gw.server, gw.box, ses) == 1, timeout=15)
    finally:
        p.terminate()
        p.wait(timeout=10)
    wait_for(lambda: connections(gw.server, gw.box, ses) == 0, timeout=5)


# -- host key ----------------------------------------------------------------------------------------

def keyscan(port: int) -> str:
    r = subprocess.run(["ssh-keyscan", "-t", "ed25519", "-p", str(port), "127.0.0.1"], capture_output=True, text=True,
                       timeout=30)
    return " ".join(r.stdout.split()[1:3])


def test_host_key_is_persistent_and_private(fresh_server):
    s = fresh_server().start()
    path = os.path.join(s.data_dir, "ssh_host_ed25519_key")
    first = keyscan(s.ssh_port)
    assert first.startswith("ssh-ed25519 ")
    assert os.stat(path).st_mode & 0o777 == 0o600
    # OpenSSH reads the file: same public key
    pub = subprocess.run(["ssh-keygen", "-y", "-f", path], capture_output=True, text=True, check=True).stdout
    assert " ".join(pub.split()[:2]) == first
    s.stop()
    s.start()
    assert keyscan(s.ssh_port) == first
