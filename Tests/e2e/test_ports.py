"""Exposed ports (issue 17): `/api/v1/devboxes/:id/ports/:port/<path>` proxies HTTP to a port
inside the box, connecting from inside the box's network namespace.

Real serve, real boxes: servers the test starts in a box on the box's own 127.0.0.1 answer
through the proxy (a file server, and an echo server that reports what it received); a
listener on the host's 127.0.0.1 is not reachable through it.
"""
import base64
import hashlib
import http.server
import json
import os
import socket
import struct
import threading
import time

import pytest
import requests

from dashboard_browser import Browser, sign_in_requests
from devbox_harness import Server

# Runs in the box: answers every method with JSON {method, path, headers, body_sha256, body_len}.
ECHO = r"""
import hashlib, http.server, json
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        out = json.dumps({"method": self.command, "path": self.path,
                          "headers": [[k, v] for k, v in self.headers.items()],
                          "body_sha256": hashlib.sha256(body).hexdigest(), "body_len": len(body)}).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Echo", "yes")
        self.send_header("Set-Cookie", "devbox_session=planted; Path=/")
        self.send_header("WWW-Authenticate", 'Basic realm="phish"')
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = answer
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", 8001), H).serve_forever()
"""

# Runs in the box: raw HTTP apps on 8002 (a chunked body, one chunk a second), 8003 (closes
# the connection without answering) and 8004 (256 MiB as fast as it can, noting its progress).
RAW = r"""
import socket, threading, time
def trickle(c):
    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n")
    for i in range(3):
        c.sendall(b"6\r\nchunk%d\r\n" % i); time.sleep(1)
    c.sendall(b"0\r\n\r\n"); c.close()
def silent(c):
    c.recv(65536); c.close()
def firehose(c):
    # 256 MiB as fast as the reader takes it; /tmp/sent says how much has left so far.
    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (256 << 20))
    block, sent = b"x" * (1 << 20), 0
    for i in range(256):
        c.sendall(block); sent += len(block)
        with open("/tmp/sent", "w") as f: f.write(str(sent))
    c.close()
def serve(port, f):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(8)
    while True:
        c, _ = s.accept(); threading.Thread(target=f, args=(c,), daemon=True).start()
threading.Thread(target=serve, args=(8002, trickle)).start()
threading.Thread(target=serve, args=(8003, silent)).start()
threading.Thread(target=serve, args=(8004, firehose)).start()
"""

# Runs in the box on 8006: a minimal RFC 6455 echo server (stdlib only). Right after its 101
# (in the same write) it sends a text frame with what it received: path and headers. Then it
# echoes text and binary frames, answers pings, and answers a close with a close. "/reject"
# answers 403 instead of 101; `Upgrade: x-echo` (any upgrade, not only WebSocket) echoes raw
# bytes until the caller half-closes, then sends "bye" and closes; `Upgrade: x-flood` sends
# 128 MiB as fast as it can; a plain GET gets 200.
WS_ECHO = r"""
import base64, hashlib, json, socket, struct, threading
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
def recv_exact(c, n):
    b = b""
    while len(b) < n:
        d = c.recv(n - len(b))
        if not d: raise EOFError
        b += d
    return b
def frame(op, payload):
    n = len(payload)
    if n < 126: h = struct.pack("!BB", 0x80 | op, n)
    elif n < 65536: h = struct.pack("!BBH", 0x80 | op, 126, n)
    else: h = struct.pack("!BBQ", 0x80 | op, 127, n)
    return h + payload
def unmask(data, mask):
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")
def read_frame(c):
    b0, b1 = recv_exact(c, 2)
    n = b1 & 0x7F
    if n == 126: n = struct.unpack("!H", recv_exact(c, 2))[0]
    elif n == 127: n = struct.unpack("!Q", recv_exact(c, 8))[0]
    mask = recv_exact(c, 4) if b1 & 0x80 else None
    data = recv_exact(c, n)
    return b0 & 0x0F, unmask(data, mask) if mask else data, mask is not None
def serve(c):
    try:
        head = b""
        while b"\r\n\r\n" not in head:
            d = c.recv(65536)
            if not d: return
            head += d
        lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = [[p.strip() for p in l.split(":", 1)] for l in lines[1:]]
        h = {k.lower(): v for k, v in headers}
        if h.get("upgrade", "").lower() == "x-echo":
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-echo\r\nConnection: Upgrade\r\n\r\n")
            while True:
                d = c.recv(65536)
                if not d: break
                c.sendall(d)
            c.sendall(b"bye"); c.close(); return
        if h.get("upgrade", "").lower() == "x-flood":
            # 128 MiB as fast as the caller takes it; /tmp/ws_sent says how much has left so far.
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-flood\r\nConnection: Upgrade\r\n\r\n")
            block, sent = b"y" * (1 << 20), 0
            for i in range(128):
                c.sendall(block); sent += len(block)
                with open("/tmp/ws_sent", "w") as f: f.write(str(sent))
            c.close(); return
        if h.get("upgrade", "").lower() != "websocket":
            body = json.dumps({"plain": True, "path": path, "headers": headers}).encode()
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                      % len(body) + body)
            c.close(); return
        if path.startswith("/reject"):
            c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
                      b"Set-Cookie: devbox_session=planted\r\n\r\nnot for you\r\n")
            c.close(); return
        accept = base64.b64encode(hashlib.sha1(h["sec-websocket-key"].encode() + GUID).digest())
        hello = json.dumps({"path": path, "headers": headers}).encode()
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: " + accept + b"\r\nSet-Cookie: devbox_session=planted\r\n\r\n" + frame(1, hello))
        while True:
            op, data, masked = read_frame(c)
            if not masked: c.close(); return   # a client's frames must be masked
            if op in (1, 2): c.sendall(frame(op, data))
            elif op == 9: c.sendall(frame(10, data))
            elif op == 8:
                c.sendall(frame(8, data[:2])); c.close(); return
    except (EOFError, OSError):
        c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8006)); s.listen(128)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

BIG = 64 * 1024 * 1024

# Served from the box on 8005: a hostile page that tries to use the dashboard's session.
ATTACK_PAGE = """<!doctype html><title>box app</title><pre id="out">running</pre>
<script>
(async () => {
  const out = ["origin=" + self.origin];
  try {
    const r = await fetch("/dashboard/api/devboxes", {credentials: "include"});
    out.push("dashboard=" + r.status + " " + (await r.text()).slice(0, 60));
  } catch (e) { out.push("dashboard=blocked"); }
  try { out.push("cookie=" + document.cookie); } catch (e) { out.push("cookie=blocked"); }
  document.getElementById("out").textContent = out.join("\\n");
})();
</script>
"""


def exec_box(server: Server, devbox_id: str, argv, timeout: int = 60, env: dict | None = None) -> dict:
    r = server.request("POST", f"/api/v1/devboxes/{devbox_id}/exec",
                       json_body={"command": argv, "timeout_seconds": timeout, "env": env or {}}, timeout=timeout + 30)
    assert r.status_code == 200, r.text
    return r.json()


def ready(server: Server, body: dict) -> dict:
    d = server.wait_state(server.create(body)["id"])
    assert d["state"] == "ready", d
    return d


def port_url(server: Server, devbox_id: str, port, path: str = "") -> str:
    return f"{server.base}/api/v1/devboxes/{devbox_id}/ports/{port}{path}"


def wait_answering(server: Server, devbox_id: str, port: int, timeout: float = 20) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = requests.get(port_url(server, devbox_id, port, "/"), headers=server.headers(), timeout=10)
        if r.status_code != 502:
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing answers on port {port} in {devbox_id}")


def other_token(server: Server) -> str:
    """Another user's token, one per serve (made once, shared by the tests that need it)."""
    if not hasattr(server, "other_token"):
        server.other_token = server.create_token("other")
    return server.other_token


def rss_anon_kib(pid: int) -> int:
    """Anonymous resident memory: what the process holds (not pages of its mapped binary)."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError("no RssAnon")


class PeakSampler:
    """Samples a process's RssAnon every 5 ms while in use; `peak` is the highest seen."""

    def __init__(self, pid: int):
        self.pid, self.stop = pid, threading.Event()
        self.start = self.peak = rss_anon_kib(pid)
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_anon_kib(self.pid))
            time.sleep(0.005)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


@pytest.fixture(scope="module")
def served():
    s = Server(env={"DEVBOX_WARM_POOL": "0"}).start()
    try:
        d = ready(s, {"name": "ports"})
        box = d["id"]
        out = exec_box(s, box, ["sh", "-c",
                                "cd /workspace && mkdir -p site && printf 'hello from the box\\n' > site/hello.txt"
                                " && head -c 8388608 /dev/urandom > /tmp/r.bin"
                                f" && for i in $(seq {BIG >> 23}); do cat /tmp/r.bin; done > site/big.bin && rm /tmp/r.bin"
                                " && sha256sum site/big.bin"
                                " && (nohup python3 -m http.server 8000 --bind 127.0.0.1 --directory site >/dev/null 2>&1 &)"
                                " && printf '%s' \"$ECHO\" > /tmp/echo.py"
                                " && (nohup python3 /tmp/echo.py >/dev/null 2>&1 &)"
                                " && printf '%s' \"$RAW\" > /tmp/raw.py"
                                " && (nohup python3 /tmp/raw.py >/dev/null 2>&1 &)"
                                " && mkdir -p /workspace/app && printf '%s' \"$PAGE\" > /workspace/app/index.html"
                                " && (nohup python3 -m http.server 8005 --bind 127.0.0.1 --directory /workspace/app"
                                " >/dev/null 2>&1 &)"
                                " && printf '%s' \"$WS_ECHO\" > /tmp/ws_echo.py"
                                " && (nohup python3 /tmp/ws_echo.py >/dev/null 2>&1 &)"],
                      env={"ECHO": ECHO, "RAW": RAW, "PAGE": ATTACK_PAGE, "WS_ECHO": WS_ECHO})
        assert out["exit_code"] == 0, out
        big_sha = out["stdout"].split()[0]
        wait_answering(s, box, 8000)
        wait_answering(s, box, 8001)
        wait_answering(s, box, 8005)
        wait_answering(s, box, 8006)
        yield s, box, big_sha
    finally:
        s.close()


def test_file_server_in_the_box_answers_through_the_port(served):
    s, box, _ = served
    r = requests.get(port_url(s, box, 8000, "/hello.txt"), headers=s.headers(), timeout=30)
    assert r.status_code == 200, r.text
    assert r.text == "hello from the box\n"
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["Content-Length"] == str(len("hello from the box\n"))
    # The page runs sandboxed in a browser (opaque origin): it cannot act on the dashboard.
    assert r.headers["Content-Security-Policy"].startswith("sandbox")
    assert "allow-same-origin" not in r.headers["Content-Security-Policy"]
    # The port itself and its trailing slash: the app's "/" (a directory listing).
    for url in (port_url(s, box, 8000), port_url(s, box, 8000, "/")):
        r = requests.get(url, headers=s.headers(), timeout=30)
        assert r.status_code == 200 and "hello.txt" in r.text, (url, r.status_code, r.text[:200])
    # The app's own statuses come back as they are.
    r = requests.get(port_url(s, box, 8000, "/missing.txt"), headers=s.headers(), timeout=30)
    assert r.status_code == 404 and "error" not in r.headers.get("Content-Type", "json")
    r = requests.head(port_url(s, box, 8000, "/hello.txt"), headers=s.headers(), timeout=30)
    assert r.status_code == 200 and r.headers["Content-Length"] == "19" and r.content == b""


def test_request_body_and_headers_reach_the_app_without_credentials(served):
    s, box, _ = served
    body = os.urandom(3 * 1024 * 1024 + 17)
    r = requests.post(port_url(s, box, 8001, "/up/load?x=1&y=%2F"), data=body, timeout=60,
                      headers=s.headers({"Authorization": "Bearer not-a-jwt-but-never-checked-here",
                                         "Cookie": "devbox_session=dbs_secret; other=1",
                                         "X-Claude-Token": "sk-claude", "X-Codex-Token": "sk-codex",
                                         "X-Custom": "kept", "Connection": "keep-alive, X-Hop", "X-Hop": "dropped",
                                         "Content-Type": "application/octet-stream"}))
    # A bearer that is not a valid JWT is refused by the API's own auth first.
    assert r.status_code == 401, r.text
    r = requests.post(port_url(s, box, 8001, "/up/load?x=1&y=%2F"), data=body, timeout=60,
                      headers=s.headers({"Cookie": "devbox_session=dbs_secret; other=1",
                                         "X-Claude-Token": "sk-claude", "X-Codex-Token": "sk-codex",
                                         "X-Custom": "kept", "Connection": "keep-alive, X-Hop", "X-Hop": "dropped",
                                         "X-Forwarded-Prefix": "/spoofed",
                                         "Content-Type": "application/octet-stream"}))
    assert r.status_code == 201, r.text
    got = r.json()
    assert got["method"] == "POST"
    assert got["path"] == "/up/load?x=1&y=%2F"
    assert got["body_len"] == len(body) and got["body_sha256"] == hashlib.sha256(body).hexdigest()
    headers = {k.lower(): v for k, v in got["headers"]}
    for secret in ("x-provider-token", "authorization", "cookie", "x-claude-token", "x-codex-token", "x-hop"):
        assert secret not in headers, (secret, headers)
    assert s.token not in json.dumps(got)
    assert headers["host"] == "127.0.0.1:8001"
    assert headers["x-forwarded-prefix"] == f"/api/v1/devboxes/{box}/ports/8001"
    assert headers["x-custom"] == "kept"
    assert headers["content-type"] == "application/octet-stream"
    # Response: the app's status and headers, but none of its cookies reach the dashboard's origin.
    assert r.headers["X-Echo"] == "yes"
    assert "Set-Cookie" not in r.headers and "WWW-Authenticate" not in r.headers

    # A chunked upload (no Content-Length) streams through too; the app sees it chunked.
    def chunks():
        for i in range(8):
            yield body[i * 1000:(i + 1) * 1000]
    r = requests.put(port_url(s, box, 8001, "/chunked"), data=chunks(), headers=s.headers(), timeout=60)
    assert r.status_code == 200, r.text
    assert {k.lower(): v for k, v in r.json()["headers"]}.get("transfer-encoding") == "chunked"
    # Every method goes through, each with the app's answer.
    for method in ("PUT", "PATCH", "DELETE", "OPTIONS"):
        r = requests.request(method, port_url(s, box, 8001, "/m"), headers=s.headers(), timeout=30)
        assert r.status_code == 200 and r.json()["method"] == method, (method, r.status_code, r.text)


def test_large_download_arrives_intact(served):
    s, box, big_sha = served
    h = hashlib.sha256()
    n = 0
    with requests.get(port_url(s, box, 8000, "/big.bin"), headers=s.headers(), stream=True, timeout=120) as r:
        assert r.status_code == 200
        assert r.headers["Content-Length"] == str(BIG)
        for chunk in r.iter_content(256 * 1024):
            h.update(chunk)
            n += len(chunk)
    assert n == BIG and h.hexdigest() == big_sha


def test_download_is_not_held_in_memory(served):
    """Backpressure end to end: while the caller reads nothing, the app in the box cannot send
    more than the sockets' buffers hold. A proxy holding the body would let it send all 256 MiB."""
    s, box, _ = served
    exec_box(s, box, ["rm", "-f", "/tmp/sent"])
    with PeakSampler(s.proc.pid) as sampler, \
            requests.get(port_url(s, box, 8004, "/"), headers=s.headers(), stream=True, timeout=120) as r:
        assert r.status_code == 200 and r.headers["Content-Length"] == str(256 << 20)
        got = len(r.raw.read(1 << 20))
        time.sleep(2)
        sent = int(exec_box(s, box, ["cat", "/tmp/sent"])["stdout"] or 0)
        assert sent < 48 << 20, f"the app sent {sent >> 20} MiB while the caller had read 1 MiB"
        for chunk in r.iter_content(1 << 20):
            got += len(chunk)
    assert got == 256 << 20
    print(f"app sent {sent >> 20} MiB ahead of a stalled reader; serve's RssAnon peak +{(sampler.peak - sampler.start) >> 10} MiB")


def test_response_streams_as_the_app_writes_it(served):
    s, box, _ = served
    seen = []
    t0 = time.monotonic()
    with requests.get(port_url(s, box, 8002, "/"), headers=s.headers(), stream=True, timeout=30) as r:
        assert r.status_code == 200 and r.headers["Content-Type"] == "text/plain"
        for chunk in r.iter_content(None):
            seen.append((time.monotonic() - t0, chunk))
    assert b"".join(c for _, c in seen) == b"chunk0chunk1chunk2"
    # The first chunk came about two seconds before the app finished (measured between the
    # chunks, so a slow connection set-up on a loaded machine does not count).
    assert seen[-1][0] - seen[0][0] > 1.5 and seen[-1][0] > 1.8, seen


def test_refusals_name_their_cause(served):
    s, box, _ = served
    # Nobody listens on the port: 502 naming it.
    r = requests.get(port_url(s, box, 8999, "/x"), headers=s.headers(), timeout=30)
    assert r.status_code == 502, r.text
    err = r.json()["error"]
    assert err["field"] == "port" and "8999" in err["message"], err
    # The app closes without answering: 502 too.
    r = requests.get(port_url(s, box, 8003, "/x"), headers=s.headers(), timeout=30)
    assert r.status_code == 502 and r.json()["error"]["field"] == "port" and "8003" in r.text, r.text
    # Not a port: 422 naming `port`.
    for bad in ("0", "65536", "http", "-1", "80a", "99999999999999999999"):
        r = requests.get(port_url(s, box, bad, "/"), headers=s.headers(), timeout=30)
        assert r.status_code == 422, (bad, r.status_code, r.text)
        assert r.json()["error"]["field"] == "port"
    # Another user's devbox is unknown; so is an unknown one.
    other = other_token(s)
    r = requests.get(port_url(s, box, 8000, "/hello.txt"), headers=s.headers(token=other), timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    assert "hello" not in r.text
    r2 = requests.get(port_url(s, "dbx_doesnotexist", 8000, "/hello.txt"), headers=s.headers(), timeout=30)
    assert r2.status_code == 404 and r2.json()["error"]["message"].replace("dbx_doesnotexist", box) == r.json()["error"]["message"]
    # No credentials at all; a wrong token.
    r = requests.get(port_url(s, box, 8000, "/hello.txt"), timeout=30)
    assert r.status_code == 401, r.text
    r = requests.get(port_url(s, box, 8000, "/hello.txt"), headers={"X-Provider-Token": "dbx_wrong"}, timeout=30)
    assert r.status_code == 401, r.text


def test_host_loopback_listener_is_not_reachable_through_the_proxy(served):
    s, box, _ = served
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "11")
            self.end_headers()
            self.wfile.write(b"host secret")

        def log_message(self, *a):
            pass

    host = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = host.server_address[1]
    t = threading.Thread(target=host.serve_forever, daemon=True)
    t.start()
    try:
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).text == "host secret"  # it does answer
        hits.clear()
        r = requests.get(port_url(s, box, port, "/"), headers=s.headers(), timeout=30)
        assert r.status_code == 502, r.text
        assert "host secret" not in r.text and hits == []
        # Nor is the service's own HTTP port (the box's 127.0.0.1 is not the host's).
        r = requests.get(port_url(s, box, s.http_port, "/healthz"), headers=s.headers(), timeout=30)
        assert r.status_code == 502, r.text
    finally:
        host.shutdown()
        host.server_close()


def test_dashboard_cookie_opens_the_port(served):
    s, box, _ = served
    http = sign_in_requests(s.base, s.token)
    page = http.get(f"{s.base}/devboxes/{box}", timeout=30)
    assert page.status_code == 200
    assert f'action="/api/v1/devboxes/{box}/ports"' in page.text and 'id="open-port-form"' in page.text
    # The form's GET lands on the port's URL.
    r = http.get(f"{s.base}/api/v1/devboxes/{box}/ports", params={"port": "8000"}, allow_redirects=False, timeout=30)
    assert r.status_code == 303 and r.headers["Location"] == f"/api/v1/devboxes/{box}/ports/8000/", r.text
    r = http.get(port_url(s, box, 8000, "/hello.txt"), timeout=30)
    assert r.status_code == 200 and r.text == "hello from the box\n", r.text
    # The cookie is not passed on, and the app cannot replace the dashboard's session.
    r = http.get(port_url(s, box, 8001, "/who"), timeout=30)
    assert r.status_code == 200
    assert "cookie" not in {k.lower() for k, _ in r.json()["headers"]}
    assert http.cookies.get("devbox_session", "").startswith("dbs_")
    # A state-changing method with the cookie must come from the service's own origin (another
    # site on this host is same-site: the SameSite=Strict cookie alone does not stop it).
    r = http.post(port_url(s, box, 8001, "/form"), data=b"a=1", timeout=30)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    r = http.post(port_url(s, box, 8001, "/form"), data=b"a=1", headers={"Origin": "http://127.0.0.1:1"}, timeout=30)
    assert r.status_code == 403, r.text
    r = http.post(port_url(s, box, 8001, "/form"), data=b"a=1", headers={"Origin": s.base}, timeout=30)
    assert r.status_code == 201 and r.json()["body_len"] == 3, r.text
    # Signed out: the cookie no longer opens anything.
    stale = requests.get(port_url(s, box, 8000, "/hello.txt"), cookies={"devbox_session": "dbs_" + "x" * 40}, timeout=30)
    assert stale.status_code == 401, stale.text


def test_browser_opens_the_port_from_the_dashboard_and_the_page_is_sandboxed(served):
    """Real Chromium: the devbox page's form opens the port in a new tab with the session
    cookie; the box's page runs in an opaque origin and cannot use the dashboard's session."""
    s, box, _ = served
    b = Browser()
    try:
        b.get(s.base + "/login")
        b.type("#provider_token", s.token)
        b.submit("#sign-in")
        b.get(f"{s.base}/devboxes/{box}")
        b.type("#port", "8005")
        dashboard_tab = b.driver.current_window_handle
        b.find("#open-port").click()
        b.wait(30).until(lambda d: len(d.window_handles) == 2)
        b.driver.switch_to.window(next(h for h in b.driver.window_handles if h != dashboard_tab))
        b.wait(30).until(lambda d: "/ports/8005/" in d.current_url)
        b.wait_text("#out", "cookie=", timeout=30)
        out = b.find("#out").text
        print("box page in the browser:", out.replace("\n", " | "))
        assert b.path() == f"/api/v1/devboxes/{box}/ports/8005/"
        assert "origin=null" in out, out            # an opaque origin, not the dashboard's
        assert "dashboard=blocked" in out, out      # cannot read the dashboard's answers
        assert "cookie=blocked" in out, out         # nor see any cookie
        assert box not in out
    finally:
        b.close()


def test_a_devbox_that_is_not_ready_answers_409(served):
    s, box, _ = served
    other = ready(s, {"name": "stopping"})
    r = s.request("POST", f"/api/v1/devboxes/{other['id']}/stop", timeout=60)
    assert r.status_code == 200, r.text
    r = requests.get(port_url(s, other["id"], 8000, "/"), headers=s.headers(), timeout=30)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "conflict"


# --- WebSocket (any HTTP/1.1 upgrade) through the port -------------------------------------

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WS:
    """A minimal RFC 6455 client over a raw socket (stdlib only): masked frames out."""

    def __init__(self, sock: socket.socket, rest: bytes):
        self.sock, self.buf = sock, rest

    def recv_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            d = self.sock.recv(1 << 20)
            if not d:
                raise EOFError(f"closed with {len(self.buf)} of {n} bytes")
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, op: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | op, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | op, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | op, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = _mask_fast(payload, mask)
        self.sock.sendall(head + mask + masked)

    def recv(self) -> tuple[int, bytes]:
        b0, b1 = self.recv_exact(2)
        assert b1 & 0x80 == 0, "a server's frames are not masked"
        assert b0 & 0x80, "no fragments expected"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.recv_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.recv_exact(8))[0]
        return b0 & 0x0F, self.recv_exact(n)

    def close(self) -> None:
        """Clean close: our close frame, the server's answer, then the end of the stream."""
        self.send(8, struct.pack("!H", 1000))
        op, data = self.recv()
        assert op == 8 and struct.unpack("!H", data[:2])[0] == 1000, (op, data)
        assert self.sock.recv(1) == b""  # the server closed; the proxy closed the caller's side too
        self.sock.close()


def _mask_fast(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def upgrade_request(server: Server, devbox_id: str, port, path: str = "/", headers: dict | None = None,
                    upgrade: str = "websocket") -> tuple[socket.socket, int, dict, bytes]:
    """Sends an upgrade request through the proxy; returns the socket, the status, the response
    headers (lowercased) and what came after them."""
    key = base64.b64encode(os.urandom(16)).decode()
    h = {"Host": f"127.0.0.1:{server.http_port}", "Connection": "Upgrade", "Upgrade": upgrade}
    if upgrade == "websocket":
        h |= {"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": key}
    h |= headers if headers is not None else {"X-Provider-Token": server.token}
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=30)
    req = f"GET /api/v1/devboxes/{devbox_id}/ports/{port}{path} HTTP/1.1\r\n"
    req += "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    sock.sendall(req.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        d = sock.recv(65536)
        assert d, f"closed before a response head: {data!r}"
        data += d
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    fields = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        fields[k.strip().lower()] = v.strip()
    if status == 101 and upgrade == "websocket":
        want = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        assert fields["sec-websocket-accept"] == want, fields
    return sock, status, fields, rest


def read_body(sock: socket.socket, fields: dict, rest: bytes) -> bytes:
    """The rest of a non-101 answer; the proxy closes the connection after it."""
    n = int(fields.get("content-length", "-1"))
    body = rest
    while True:
        d = sock.recv(65536)
        if not d:
            break
        body += d
    sock.close()
    return body if n < 0 else body[:n]


def ws_connect(server: Server, devbox_id: str, path: str = "/", headers: dict | None = None) -> tuple[WS, dict]:
    sock, status, fields, rest = upgrade_request(server, devbox_id, 8006, path, headers)
    assert status == 101, (status, fields, rest)
    ws = WS(sock, rest)
    op, hello = ws.recv()  # sent by the app right after its 101
    assert op == 1
    return ws, json.loads(hello)


def test_websocket_echoes_through_the_port(served):
    s, box, _ = served
    sock, status, fields, rest = upgrade_request(
        s, box, 8006, "/chat?room=1",
        {"X-Provider-Token": s.token, "Cookie": "devbox_session=dbs_secret; other=1", "Origin": "http://elsewhere.example",
         "Sec-WebSocket-Protocol": "chat", "X-Custom": "kept"})
    assert status == 101, (status, fields, rest)
    assert fields["upgrade"] == "websocket" and fields["connection"].lower() == "upgrade", fields
    assert "set-cookie" not in fields, fields  # the app's cookies never reach the dashboard's origin
    ws = WS(sock, rest)
    op, hello = ws.recv()
    assert op == 1
    seen = json.loads(hello)
    assert seen["path"] == "/chat?room=1"
    headers = {k.lower(): v for k, v in seen["headers"]}
    for secret in ("x-provider-token", "authorization", "cookie"):
        assert secret not in headers, (secret, headers)
    assert s.token not in hello.decode()
    assert headers["host"] == "127.0.0.1:8006"
    assert headers["x-forwarded-prefix"] == f"/api/v1/devboxes/{box}/ports/8006"
    assert headers["upgrade"] == "websocket" and headers["connection"].lower() == "upgrade"
    assert headers["sec-websocket-protocol"] == "chat" and headers["x-custom"] == "kept"
    assert headers["origin"] == "http://elsewhere.example"  # with a token, Origin is the app's business
    # Messages both ways, among them 1 MiB (64-bit length) and binary.
    big = os.urandom(1 << 20)
    for op, payload in ((1, b"hello"), (1, "h\u00e9llo \u2603".encode()), (2, big), (2, b""), (1, b"x" * 70000), (1, b"last")):
        ws.send(op, payload)
        got_op, got = ws.recv()
        assert got_op == op and got == payload, (op, len(payload), got_op, len(got))
    ws.send(9, b"ping?")
    assert ws.recv() == (10, b"ping?")
    ws.close()
    # Several at once, interleaved.
    conns = [ws_connect(s, box)[0] for _ in range(5)]
    for i, ws in enumerate(conns):
        ws.send(1, f"m{i}".encode())
    for i, ws in enumerate(reversed(conns)):
        assert ws.recv() == (1, f"m{len(conns) - 1 - i}".encode())
    for ws in conns:
        ws.close()
    # Plain HTTP to the same port and to another still goes through (regression).
    r = requests.get(port_url(s, box, 8006, "/plain"), headers=s.headers(), timeout=30)
    assert r.status_code == 200 and r.json()["plain"] is True, r.text
    r = requests.post(port_url(s, box, 8001, "/after-ws"), data=b"abc", headers=s.headers(), timeout=30)
    assert r.status_code == 201 and r.json()["body_len"] == 3, r.text
    # Only one of the two upgrade headers: plain HTTP, and neither reaches the app.
    r = requests.get(port_url(s, box, 8001, "/half"), headers=s.headers({"Upgrade": "websocket"}), timeout=30)
    assert r.status_code == 200, r.text
    assert "upgrade" not in {k.lower() for k, _ in r.json()["headers"]}


def test_any_upgrade_is_a_byte_relay_with_half_close(served):
    """`Upgrade: x-echo`: raw bytes both ways; the caller's half-close reaches the app, whose
    answer still comes back before both connections close."""
    s, box, _ = served
    sock, status, fields, rest = upgrade_request(s, box, 8006, "/raw", upgrade="x-echo")
    assert status == 101 and fields["upgrade"] == "x-echo", (status, fields)
    payload = os.urandom(3 * 1024 * 1024)
    t = threading.Thread(target=lambda: (sock.sendall(payload), sock.shutdown(socket.SHUT_WR)))
    t.start()
    got = rest
    while True:
        d = sock.recv(1 << 20)
        if not d:
            break
        got += d
    t.join()
    sock.close()
    assert len(got) == len(payload) + 3 and got[:-3] == payload and got[-3:] == b"bye"


def test_upgraded_connection_is_not_held_in_memory(served):
    """Back-pressure through the relay: while the caller reads nothing, the app cannot send
    more than the sockets' buffers hold."""
    s, box, _ = served
    exec_box(s, box, ["rm", "-f", "/tmp/ws_sent"])
    with PeakSampler(s.proc.pid) as sampler:
        sock, status, fields, rest = upgrade_request(s, box, 8006, "/", upgrade="x-flood")
        assert status == 101, (status, fields)
        got = len(rest)
        while got < 1 << 20:
            got += len(sock.recv(1 << 20))
        time.sleep(2)
        sent = int(exec_box(s, box, ["cat", "/tmp/ws_sent"])["stdout"] or 0)
        assert sent < 48 << 20, f"the app sent {sent >> 20} MiB while the caller had read {got >> 20} MiB"
        while True:
            d = sock.recv(1 << 20)
            if not d:
                break
            got += len(d)
        sock.close()
    assert got == 128 << 20
    print(f"app sent {sent >> 20} MiB ahead of a stalled reader; serve's RssAnon peak +{(sampler.peak - sampler.start) >> 10} MiB")


def test_websocket_refusals_come_before_the_upgrade(served):
    s, box, _ = served
    # Another user's devbox: 404 as JSON, no upgrade, the connection closed after it.
    other = other_token(s)
    sock, status, fields, rest = upgrade_request(s, box, 8006, "/", {"X-Provider-Token": other})
    body = read_body(sock, fields, rest)
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found", (status, body)
    # No credentials; a wrong token.
    for headers in ({}, {"X-Provider-Token": "dbx_wrong"}):
        sock, status, fields, rest = upgrade_request(s, box, 8006, "/", headers)
        body = read_body(sock, fields, rest)
        assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized", (status, body)
    # Nothing listens on the port: 502 naming it.
    sock, status, fields, rest = upgrade_request(s, box, 8998, "/")
    err = json.loads(read_body(sock, fields, rest))["error"]
    assert status == 502 and err["field"] == "port" and "8998" in err["message"], (status, err)
    # Not a port: 422.
    sock, status, fields, rest = upgrade_request(s, box, "0", "/")
    assert status == 422 and json.loads(read_body(sock, fields, rest))["error"]["field"] == "port"
    # The app declines: its answer as it is (without its cookie), then the connection closes.
    sock, status, fields, rest = upgrade_request(s, box, 8006, "/reject")
    assert status == 403 and "set-cookie" not in fields, (status, fields)
    assert read_body(sock, fields, rest) == b"not for you\r\n"


def test_websocket_with_the_dashboard_cookie_needs_the_dashboards_origin(served):
    """Cross-site WebSocket hijacking: the SameSite=Strict cookie goes along from any page on
    this host, so an upgrade with the cookie must carry this service's own Origin."""
    s, box, _ = served
    http = sign_in_requests(s.base, s.token)
    cookie = f"devbox_session={http.cookies['devbox_session']}"
    for origin in ("http://127.0.0.1:1", "null", None):
        headers = {"Cookie": cookie} | ({"Origin": origin} if origin else {})
        sock, status, fields, rest = upgrade_request(s, box, 8006, "/", headers)
        body = read_body(sock, fields, rest)
        assert status == 403 and json.loads(body)["error"]["code"] == "forbidden", (origin, status, body)
    ws, seen = ws_connect(s, box, "/", {"Cookie": cookie, "Origin": s.base})
    assert "cookie" not in {k.lower() for k, _ in seen["headers"]}
    ws.send(1, b"from the dashboard")
    assert ws.recv() == (1, b"from the dashboard")
    ws.close()


def test_upgraded_connections_are_limited_per_user(served):
    """At most 64 upgraded connections per user: the next is refused with 503 before
    upgrading, and a closed one frees its place."""
    s, box, _ = served
    time.sleep(0.5)  # the other tests' connections are closed; their places freed
    conns = []
    try:
        while len(conns) <= 64:
            sock, status, fields, rest = upgrade_request(s, box, 8006, "/")
            if status != 101:
                body = read_body(sock, fields, rest)
                break
            conns.append(WS(sock, rest))
            conns[-1].recv()
        assert len(conns) == 64 and status == 503, (len(conns), status)
        assert json.loads(body)["error"]["code"] == "too_many_connections", body
        # Every one of them still works.
        for i, ws in enumerate(conns):
            ws.send(1, b"%d" % i)
        for i, ws in enumerate(conns):
            assert ws.recv() == (1, b"%d" % i)
        conns.pop().close()
        deadline = time.time() + 10
        while True:
            sock, status, fields, rest = upgrade_request(s, box, 8006, "/")
            if status == 101 or time.time() > deadline:
                break
            read_body(sock, fields, rest)
            time.sleep(0.1)
        assert status == 101
        conns.append(WS(sock, rest))
        conns[-1].recv()
    finally:
        for ws in conns:
            ws.close()


def test_idle_upgraded_connections_are_closed():
    """No byte either way for DEVBOX_PORT_IDLE_TIMEOUT (10 minutes by default): both
    connections close; one that keeps talking stays open."""
    s = Server(env={"DEVBOX_WARM_POOL": "0", "DEVBOX_PORT_IDLE_TIMEOUT": "2"}).start()
    try:
        box = ready(s, {"name": "idle"})["id"]
        out = exec_box(s, box, ["sh", "-c", "printf '%s' \"$WS_ECHO\" > /tmp/ws_echo.py"
                                            " && (nohup python3 /tmp/ws_echo.py >/dev/null 2>&1 &)"],
                       env={"WS_ECHO": WS_ECHO})
        assert out["exit_code"] == 0, out
        wait_answering(s, box, 8006)
        quiet, _ = ws_connect(s, box)
        busy, _ = ws_connect(s, box)
        t0 = time.monotonic()
        for i in range(5):
            busy.send(1, b"%d" % i)
            assert busy.recv() == (1, b"%d" % i)
            time.sleep(1)
        quiet.sock.settimeout(10)
        assert quiet.sock.recv(1) == b"", "the idle connection was not closed"
        assert time.monotonic() - t0 < 8
        busy.close()  # still open after 5 s of traffic
    finally:
        s.close()
