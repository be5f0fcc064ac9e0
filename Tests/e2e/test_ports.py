"""Exposed ports (issue 17): `/api/v1/devboxes/:id/ports/:port/<path>` proxies HTTP to a port
inside the box, connecting from inside the box's network namespace.

Real serve, real boxes: servers the test starts in a box on the box's own 127.0.0.1 answer
through the proxy (a file server, and an echo server that reports what it received); a
listener on the host's 127.0.0.1 is not reachable through it.
"""
import hashlib
import http.server
import json
import os
import socket
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
                                " >/dev/null 2>&1 &)"],
                      env={"ECHO": ECHO, "RAW": RAW, "PAGE": ATTACK_PAGE})
        assert out["exit_code"] == 0, out
        big_sha = out["stdout"].split()[0]
        wait_answering(s, box, 8000)
        wait_answering(s, box, 8001)
        wait_answering(s, box, 8005)
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
    # The first chunk came about two seconds before the app finished.
    assert seen[0][0] < 0.8 and seen[-1][0] > 1.8, seen


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
    other = s.create_token("other")
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
    # WebSocket upgrades are refused clearly (not proxied yet).
    r = requests.get(port_url(s, box, 8000, "/ws"), timeout=30,
                     headers=s.headers({"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}))
    assert r.status_code == 501 and r.json()["error"]["code"] == "not_implemented", r.text


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
