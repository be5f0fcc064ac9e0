#!/usr/bin/env python3
"""The AI-API broker's overhead (issue 19): a 1 KiB request/response and a 10 MiB streamed
response, through the broker from inside a proxy-mode box versus straight to the same fake
upstream, in one run (rounds alternate so machine load hits every path alike).

    DEVBOX_BIN=.build-release/release/devbox .venv/bin/python bench/broker_bench.py [--n 300] [--big 3] [--rounds 3] [--relay on|off]

It starts its own serve (a temporary data dir, Tests/e2e/devbox_harness.py) and a fake
Anthropic upstream on 127.0.0.1 that checks the key. Three paths, the same client program
(Python http.client; 1 KiB requests on one kept-alive connection, then 10 MiB streams read
with read1(1 MiB), each on a new connection):
- broker: box → veth → broker → loopback → upstream. The upstream is `http://`, so the broker
  uses its splice relay (BrokerRelay.swift); `--relay off` makes serve use async-http-client
  for it, the path every `https://` upstream takes, for a before/after in one machine state;
- direct: host → loopback → upstream (the figure the issue's goal was first measured against);
- veth: from a network namespace the bench makes (a veth pair, like a box's, on a private
  /30 of 198.51.100.0/24, removed at the end) straight to the upstream listening on the host
  end: the issue's "calling the fake upstream directly" from where the box's client sits —
  the box's veth hop and network namespace, without the broker. The loopback path skips that
  hop, so against it the broker is also charged for the veth. `added_p50_us` and
  `throughput_ratio` are against `direct` (as before), `added_vs_veth_us` and `ratio_vs_veth`
  against `veth`.
Method, and why the comparison is fair: the small and the streaming phases run as separate
client processes, path after path, `--rounds` times; latency is p50/p95 over all small
requests of a path, throughput the median over its streams (bytes / time from request to the
last byte; the time to the body's first byte is printed too). Everything runs on this machine's cores, so a path's throughput is set by the CPU
its processes need per MiB: the bench prints, per path, the CPU per MiB streamed of the
client (its own getrusage over its streams), of the upstream (this process's CPU; it does
nothing else meanwhile) and of serve (/proc/PID/stat; the broker path's figure includes the
exec API starting the client in the box is measured by an exec without streams and
subtracted), and how busy the
upstream was (its CPU seconds / streaming seconds). The upstream writes prebuilt 64 KiB
`data:` lines (server-sent events, no length, close at the end) and stays well under one
core (busy ≈ 0.2–0.4), so it is not what bounds either path, and it is the same process
and code for all three. Goal of the issue: ≤ 1 ms p50 added, throughput ≥ 0.9×. `--json`
for machine-readable output.
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
import http.client, json, resource, socket, sys, time, urllib.parse
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
tput = []; ttfb = []
ru = resource.getrusage(resource.RUSAGE_SELF)
cpu0, wall0 = ru.ru_utime + ru.ru_stime, time.perf_counter()
for _ in range(b):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    t = time.perf_counter()
    c.request("POST", u.path + "/v1/messages", body=big, headers=h)
    r = c.getresponse(); got = 0
    while True:
        d = r.read1(1 << 20)
        if not d: break
        if not got: ttfb.append((time.perf_counter() - t) * 1e3)
        got += len(d)
    dt = time.perf_counter() - t
    assert r.status == 200 and got == %d, (r.status, got)
    tput.append(got / dt / (1 << 20))
    c.close()
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"lat_us": lat, "mib_s": tput, "ttfb_ms": ttfb, "client_cpu_s": ru.ru_utime + ru.ru_stime - cpu0,
                  "stream_wall_s": time.perf_counter() - wall0}))
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


def cpu_seconds(pid):
    """User + system CPU of process `pid` so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(samples, q):
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=300, help="1 KiB requests per round and path")
    p.add_argument("--big", type=int, default=3, help="10 MiB streams per round and path")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--relay", choices=("on", "off"), default="on",
                   help="DEVBOX_BROKER_RELAY of the serve: off sends the box's requests through async-http-client "
                        "(the path of https:// upstreams) instead of the splice relay")
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
        s = Server(env={"DEVBOX_ANTHROPIC_UPSTREAM": up.url, "DEVBOX_WARM_POOL": "1", "DEVBOX_LOG_LEVEL": "notice",
                        "DEVBOX_BROKER_RELAY": a.relay})
        s.start()
    except BaseException:
        stack.close()
        raise
    try:
        d = s.create({"name": "bench", "credential_mode": "proxy", "credential_profile": {"inject_claude_token": True}},
                     headers={"X-Claude-Token": key})
        d = s.wait_state(d["id"])
        assert d["state"] == "ready", s.operations(d["id"])
        results = {p: {"lat_us": [], "mib_s": [], "ttfb_ms": [], "client_cpu_s": 0.0, "serve_cpu_s": 0.0, "upstream_cpu_s": 0.0,
                       "stream_wall_s": 0.0} for p in ("direct", "veth", "broker")}

        def run(path, small, big):
            if path == "direct":
                argv = [sys.executable, "-c", CLIENT, up.url, key, "x-api-key", str(small), str(big)]
            elif path == "veth":
                argv = ["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, veth_url, key, "x-api-key",
                        str(small), str(big)]
            else:
                argv = None
            fixed = 0.0
            if big and not argv:
                # serve's CPU for an exec of the client without streams (crun exec, the 20 warm-up
                # requests): subtracted, so serve's figure is what the streams cost it.
                serve0 = cpu_seconds(s.proc.pid)
                run_client(None, 0, 0)
                fixed = cpu_seconds(s.proc.pid) - serve0
            serve0, up0 = cpu_seconds(s.proc.pid), sum(os.times()[:2])
            got = run_client(argv, small, big)
            if big:
                # CPU while streaming (the client's own figure covers its streams only; serve's and
                # this process's (the upstream's threads) include the client's start and 20 small requests).
                got["serve_cpu_s"] = max(0.0, cpu_seconds(s.proc.pid) - serve0 - fixed)
                got["upstream_cpu_s"] = sum(os.times()[:2]) - up0
                for k in ("mib_s", "ttfb_ms", "client_cpu_s", "serve_cpu_s", "upstream_cpu_s", "stream_wall_s"):
                    results[path][k] += got[k]
            else:
                results[path]["lat_us"] += got["lat_us"]

        def run_client(argv, small, big):
            if argv:
                out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            else:
                r = s.request("POST", f"/api/v1/devboxes/{d['id']}/exec", timeout=900, json_body={
                    "command": ["sh", "-c", 'exec python3 -c "$0" "$ANTHROPIC_BASE_URL" "$ANTHROPIC_API_KEY" x-api-key '
                                f'{small} {big}', CLIENT], "timeout_seconds": 600})
                res = r.json()
                assert res["exit_code"] == 0, res
                out = res["stdout"]
            return json.loads(out)

        for _ in range(a.rounds):
            for path in ("direct", "veth", "broker"):
                run(path, a.n, 0)
            for path in ("direct", "veth", "broker"):
                run(path, 0, a.big)
        summary = {}
        for path, v in results.items():
            mib = len(v["mib_s"]) * (BIG >> 20)
            summary[path] = {"p50_us": round(pct(v["lat_us"], 50), 1), "p95_us": round(pct(v["lat_us"], 95), 1),
                             "stream_mib_s_p50": round(pct(v["mib_s"], 50), 1), "requests": len(v["lat_us"]),
                             "first_byte_ms_p50": round(pct(v["ttfb_ms"], 50), 2),
                             "streams": len(v["mib_s"]),
                             # CPU per MiB streamed (ms) of each process, and how busy the upstream was.
                             "cpu_ms_per_mib": {k: round(v[k + "_cpu_s"] * 1000 / mib, 2)
                                                for k in ("client", "upstream", "serve")},
                             "upstream_busy": round(v["upstream_cpu_s"] / v["stream_wall_s"], 2)}
        summary["added_p50_us"] = round(summary["broker"]["p50_us"] - summary["direct"]["p50_us"], 1)
        summary["throughput_ratio"] = round(summary["broker"]["stream_mib_s_p50"] / summary["direct"]["stream_mib_s_p50"], 3)
        summary["added_vs_veth_us"] = round(summary["broker"]["p50_us"] - summary["veth"]["p50_us"], 1)
        summary["ratio_vs_veth"] = round(summary["broker"]["stream_mib_s_p50"] / summary["veth"]["stream_mib_s_p50"], 3)
        if a.json:
            print(json.dumps(summary))
        else:
            for path in ("direct", "veth", "broker"):
                m = summary[path]
                c = m["cpu_ms_per_mib"]
                print(f"{path:7s} 1 KiB p50 {m['p50_us']:8.1f} µs  p95 {m['p95_us']:8.1f} µs   "
                      f"10 MiB stream p50 {m['stream_mib_s_p50']:8.1f} MiB/s, first body byte {m['first_byte_ms_p50']} ms  "
                      f"({m['requests']} req, {m['streams']} streams)  "
                      f"CPU ms/MiB client {c['client']} upstream {c['upstream']} serve {c['serve']}; "
                      f"upstream busy {m['upstream_busy']}")
            print(f"broker adds {summary['added_p50_us']} µs at p50; stream throughput {summary['throughput_ratio']}× direct")
            print(f"against a box's own veth hop: adds {summary['added_vs_veth_us']} µs at p50; "
                  f"stream throughput {summary['ratio_vs_veth']}× veth")
    finally:
        s.close()
        up.httpd.shutdown()
        stack.close()


if __name__ == "__main__":
    main()
