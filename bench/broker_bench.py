#!/usr/bin/env python3
"""The AI-API broker's overhead (issue 19): a 1 KiB request/response and a 10 MiB streamed
response, through the broker from inside a proxy-mode box versus straight to the same fake
upstream from the host, in one run (rounds alternate so machine load hits both alike).

    DEVBOX_BIN=.build/debug/devbox .venv/bin/python bench/broker_bench.py [--n 300] [--big 5] [--rounds 3]

It starts its own serve (a temporary data dir, Tests/e2e/devbox_harness.py) and a fake
Anthropic upstream on 127.0.0.1 that checks the key. Three paths, the same client program:
- broker: box → veth → broker → loopback → upstream;
- direct: host → loopback → upstream (the figure the issue's goal was first measured against);
- veth: from a network namespace the bench makes (a veth pair, like a box's, on a private
  /30 of 198.51.100.0/24, removed at the end) straight to the upstream listening on the host
  end: what a box calling the API itself pays — the box's veth hop and its network namespace
  — without the broker. The loopback path skips that hop, so against it the broker is charged
  for the veth too; `added_p50_us` and `throughput_ratio` are against `direct` (as before),
  `added_vs_veth_us` and `ratio_vs_veth` against `veth`.
Goal of the issue: ≤ 1 ms p50 added, throughput ≥ 0.9×. Prints p50/p95 per path and the
ratios; `--json` for machine-readable output.
"""
import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Tests", "e2e"))
from devbox_harness import Server  # noqa: E402

SMALL = 1024
BIG = 10 << 20
CHUNK = 64 << 10

# Runs on either side: N small requests on one keep-alive connection, then B big streams.
CLIENT = r"""
import http.client, json, socket, sys, time, urllib.parse
base, key, header, n, b = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
u = urllib.parse.urlparse(base)
body = json.dumps({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x" * 930}]}).encode()
h = {header: key, "content-type": "application/json"}
c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
c.connect(); c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
lat = []
for i in range(n + 20):
    t = time.perf_counter()
    c.request("POST", u.path + "/v1/messages", body=body, headers=h)
    r = c.getresponse(); data = r.read()
    assert r.status == 200 and len(data) >= 1000, (r.status, data[:200])
    if i >= 20: lat.append((time.perf_counter() - t) * 1e6)
c.close()
big = json.dumps({"model": "m", "stream": True, "big": True, "messages": []}).encode()
tput = []
for _ in range(b):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    t = time.perf_counter()
    c.request("POST", u.path + "/v1/messages", body=big, headers=h)
    r = c.getresponse(); got = 0
    while True:
        d = r.read1(1 << 20)
        if not d: break
        got += len(d)
    dt = time.perf_counter() - t
    assert r.status == 200 and got == %d, (r.status, got)
    tput.append(got / dt / (1 << 20))
    c.close()
print(json.dumps({"lat_us": lat, "mib_s": tput}))
""" % BIG


class Upstream:
    def __init__(self, key: str):
        payload = json.dumps({"id": "msg", "usage": {"input_tokens": 1, "output_tokens": 1},
                              "content": [{"type": "text", "text": "y" * 900}]}).encode()
        chunk = b"data: " + b"z" * (CHUNK - 8) + b"\n\n"

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Buffered: head and body leave in one write (two writes meet the client's
            # delayed ACK under Nagle: 40 ms a request).
            wbufsize = 1 << 16
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("x-api-key") != key:
                    self.send_response(401)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    self.wfile.flush()
                    return
                if b'"big": true' in body:
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("connection", "close")
                    self.end_headers()
                    for _ in range(BIG // CHUNK):
                        self.wfile.write(chunk)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()

        self.handler = H
        self.httpd = self.listen("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def listen(self, address):
        httpd = ThreadingHTTPServer((address, 0), self.handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return httpd


@contextlib.contextmanager
def veth_namespace():
    """A network namespace wired to the host by a veth pair: (namespace, host address)."""
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    tag = os.urandom(3).hex()
    ns, host_if, peer_if = f"bbench{tag}", f"bbh{tag}", f"bbp{tag}"
    while True:
        k = random.randrange(0, 64)
        host_ip, peer_ip = f"198.51.100.{4 * k + 1}", f"198.51.100.{4 * k + 2}"
        if host_ip + "/" not in used and peer_ip + "/" not in used:
            break

    def ip(*args):
        subprocess.run(["ip", *args], check=True)

    ip("netns", "add", ns)
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if, "netns", ns)
        ip("addr", "add", host_ip + "/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("-n", ns, "addr", "add", peer_ip + "/30", "dev", peer_if)
        ip("-n", ns, "link", "set", peer_if, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        yield ns, host_ip
    finally:
        subprocess.run(["ip", "link", "del", host_if], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


def pct(samples, q):
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=300, help="1 KiB requests per round and path")
    p.add_argument("--big", type=int, default=3, help="10 MiB streams per round and path")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    key = "sk-ant-bench-" + os.urandom(16).hex()
    up = Upstream(key)
    stack = contextlib.ExitStack()
    try:
        ns, host_ip = stack.enter_context(veth_namespace())
        veth_httpd = up.listen(host_ip)
        stack.callback(veth_httpd.shutdown)
        veth_url = f"http://{host_ip}:{veth_httpd.server_address[1]}"
        s = Server(env={"DEVBOX_ANTHROPIC_UPSTREAM": up.url, "DEVBOX_WARM_POOL": "1", "DEVBOX_LOG_LEVEL": "notice"})
        s.start()
    except BaseException:
        stack.close()
        raise
    try:
        d = s.create({"name": "bench", "credential_mode": "proxy", "credential_profile": {"inject_claude_token": True}},
                     headers={"X-Claude-Token": key})
        d = s.wait_state(d["id"])
        assert d["state"] == "ready", s.operations(d["id"])
        results = {p: {"lat_us": [], "mib_s": []} for p in ("direct", "veth", "broker")}
        for _ in range(a.rounds):
            out = subprocess.run([sys.executable, "-c", CLIENT, up.url, key, "x-api-key", str(a.n), str(a.big)],
                                 capture_output=True, text=True, check=True).stdout
            for k, v in json.loads(out).items():
                results["direct"][k] += v
            out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, veth_url, key, "x-api-key",
                                  str(a.n), str(a.big)], capture_output=True, text=True, check=True).stdout
            for k, v in json.loads(out).items():
                results["veth"][k] += v
            r = s.request("POST", f"/api/v1/devboxes/{d['id']}/exec", timeout=900, json_body={
                "command": ["sh", "-c", 'exec python3 -c "$0" "$ANTHROPIC_BASE_URL" "$ANTHROPIC_API_KEY" x-api-key '
                            f'{a.n} {a.big}', CLIENT], "timeout_seconds": 600})
            out = r.json()
            assert out["exit_code"] == 0, out
            for k, v in json.loads(out["stdout"]).items():
                results["broker"][k] += v
        summary = {}
        for path, v in results.items():
            summary[path] = {"p50_us": round(pct(v["lat_us"], 50), 1), "p95_us": round(pct(v["lat_us"], 95), 1),
                             "stream_mib_s_p50": round(pct(v["mib_s"], 50), 1), "requests": len(v["lat_us"]),
                             "streams": len(v["mib_s"])}
        summary["added_p50_us"] = round(summary["broker"]["p50_us"] - summary["direct"]["p50_us"], 1)
        summary["throughput_ratio"] = round(summary["broker"]["stream_mib_s_p50"] / summary["direct"]["stream_mib_s_p50"], 3)
        summary["added_vs_veth_us"] = round(summary["broker"]["p50_us"] - summary["veth"]["p50_us"], 1)
        summary["ratio_vs_veth"] = round(summary["broker"]["stream_mib_s_p50"] / summary["veth"]["stream_mib_s_p50"], 3)
        if a.json:
            print(json.dumps(summary))
        else:
            for path in ("direct", "veth", "broker"):
                m = summary[path]
                print(f"{path:7s} 1 KiB p50 {m['p50_us']:8.1f} µs  p95 {m['p95_us']:8.1f} µs   "
                      f"10 MiB stream p50 {m['stream_mib_s_p50']:8.1f} MiB/s  ({m['requests']} req, {m['streams']} streams)")
            print(f"broker adds {summary['added_p50_us']} µs at p50; stream throughput {summary['throughput_ratio']}× direct")
            print(f"against a box's own veth hop: adds {summary['added_vs_veth_us']} µs at p50; "
                  f"stream throughput {summary['ratio_vs_veth']}× veth")
    finally:
        s.close()
        up.httpd.shutdown()
        stack.close()


if __name__ == "__main__":
    main()
