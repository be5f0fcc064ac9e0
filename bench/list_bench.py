#!/usr/bin/env python3
"""The list under churn (issue 21): after ~1,000 create/delete cycles, 200 concurrent clients
mix GET by id, paged lists of live devboxes and create/delete; prints p50/p99 per kind
(wrk for the reads, so the client is not the bottleneck; needs wrk).

    bench/list_bench.py [--cycles 1000] [--clients 200] [--seconds 20] [--wrk-threads 1] [--churn 0]
                        [--think-ms 50] [--reads-at URL]

`--think-ms N` makes every read connection wait about N ms (uniform N/2–3N/2) between a response and
its next request, as clients polling a devbox or a page do: the figures are then the server's
latency at that load, not Little's law of a saturated closed loop (with no think time, 180
connections keep the two cores busy and mean latency ≈ connections / throughput whatever the
server; even bench/null_http.c shows a p99 of ~27 ms there).

`--reads-at` sends wrk's reads to another server while this serve still takes the churn: with
bench/null_http.c (a fixed 200 from two epoll threads, nothing else) it gives the floor of the
machine, what any server would answer with the churn's box work beside it.

Besides wrk's figures (client side: kernel queues, event loops and the client's own scheduling
included) it prints the service's own view over the same window, from the
`devbox_http_request_duration_seconds` histogram of /metrics (the handler chain: auth, cache,
encoding; quantiles are bucket bounds, so "≤ 25 ms" means the 99th percentile fell in the
10–25 ms bucket), and serve's CPU time per request served (from /proc, so a busy machine
shows up as a lower throughput, not as a higher cost). With every client closed-loop and no
think time, latency is bounded below by Little's law: mean ≈ connections / throughput.

Starts its own release serve (DEVBOX_BIN, default .build/release/devbox) on a fresh data dir
with no warm pool; devboxes are deleted right after their create. A box whose DELETE arrives
before its build begins is never built, but many creates start before their DELETE comes, so
crun, mounts and box networks still take a large part of the machine (the CPU of serve's reaped
children is printed): the readers' figures include that competition. Goal: p99 < 50 ms.
"""
import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from requests.adapters import HTTPAdapter


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--churn", type=float, default=0.1, help="0: no create/delete clients (reads only)")
    ap.add_argument("--wrk-threads", type=int, default=1, help="threads of each of the two wrk processes")
    ap.add_argument("--reads-at", metavar="URL",
                    help="send wrk's reads to this server instead, while the serve still does the churn (the "
                         "floor on this machine: bench/null_http.c answers every request with a fixed 200)")
    ap.add_argument("--think-ms", type=float, default=0,
                    help="each read connection waits this long on average (uniform 0.5x-1.5x) between a response "
                         "and its next request, like a client polling; 0: back to back (closed loop, saturating)")
    a = ap.parse_args()
    binary = os.environ.get("DEVBOX_BIN", ".build/release/devbox")
    if not os.access(binary, os.X_OK):
        sys.exit(f"no {binary}: build it (swift build -c release --product devbox) or set DEVBOX_BIN")
    tmp = tempfile.mkdtemp(prefix="devbox-list-bench-")
    data = os.path.join(tmp, "data")
    token = subprocess.run([binary, "token", "create", "--data-dir", data], capture_output=True, text=True,
                           check=True).stdout.strip()
    port, ssh = free_port(), free_port()
    env = dict(os.environ, DEVBOX_WARM_POOL="0", DEVBOX_LOG_LEVEL="warning", DEVBOX_DNS_UPSTREAM="127.0.0.1:9")
    log = open(os.path.join(tmp, "serve.log"), "wb")
    serve = subprocess.Popen([binary, "serve", "--data-dir", data, "--http", f"127.0.0.1:{port}", "--ssh",
                              f"127.0.0.1:{ssh}"], stdout=log, stderr=log, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if requests.get(base + "/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.05)
        local = threading.local()

        def session():
            if not hasattr(local, "s"):
                s = requests.Session()
                s.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=1))
                s.headers["X-Provider-Token"] = token
                local.s = s
            return local.s

        def cycle(i):
            s = session()
            r = s.post(base + "/api/v1/devboxes", json={"name": f"churn-{i}"}, timeout=60)
            r.raise_for_status()
            s.delete(base + f"/api/v1/devboxes/{r.json()['id']}", timeout=60).raise_for_status()

        t0 = time.time()
        with ThreadPoolExecutor(32) as ex:
            list(ex.map(cycle, range(a.cycles)))
        print(f"{a.cycles} create/delete cycles in {time.time() - t0:.1f} s")
        live = [session().post(base + "/api/v1/devboxes", json={"name": f"live-{i}"}, timeout=60).json()["id"]
                for i in range(10)]
        whole = session().get(base + "/api/v1/devboxes", timeout=60).json()["devboxes"]
        print(f"devboxes in the seed's whole list: {len(whole)} (destroyed ones stay for DEVBOX_DESTROYED_RETENTION)")

        # 200 concurrent clients: wrk (C, so the client is not the bottleneck) holds 140
        # connections on GET by id and 40 on a page of live devboxes, while 20 Python clients
        # create and delete (the churn of the mix).
        think = (f"delay = function() return math.random({max(1, int(a.think_ms / 2))}, {max(1, int(a.think_ms * 1.5))}) end\n"
                 if a.think_ms > 0 else "")
        lua = os.path.join(tmp, "get.lua")
        with open(lua, "w") as f:
            ids = ", ".join(f'"{i}"' for i in live)
            f.write(f"""ids = {{{ids}}}
request = function()
  return wrk.format("GET", "/api/v1/devboxes/" .. ids[math.random(#ids)], {{["X-Provider-Token"] = "{token}"}})
end
{think}""")
        page = os.path.join(tmp, "page.lua")
        with open(page, "w") as f:
            f.write(f"""wrk.headers["X-Provider-Token"] = "{token}"
wrk.path = "/api/v1/devboxes?state=requested&state=provisioning&state=ready&limit=50"
{think}""")
        churn = {"n": 0, "lat": [], "errors": 0}
        stop = time.time() + a.seconds
        clients = max(1, a.clients - 180)

        def churner(_):
            s = session()
            while time.time() < stop:
                t = time.perf_counter()
                try:
                    r = s.post(base + "/api/v1/devboxes", json={"name": "mix"}, timeout=60)
                    r.raise_for_status()
                    s.delete(base + f"/api/v1/devboxes/{r.json()['id']}", timeout=60).raise_for_status()
                    churn["lat"].append((time.perf_counter() - t) * 1000)
                except requests.RequestException:
                    churn["errors"] += 1

        def scrape():
            return requests.get(base + "/metrics", headers={"X-Provider-Token": token}, timeout=10).text

        def cpu_seconds(children=False):
            with open(f"/proc/{serve.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            i = 13 if children else 11
            return (int(fields[i]) + int(fields[i + 1])) / os.sysconf("SC_CLK_TCK")

        def wrk(script, conns):
            return subprocess.run(["wrk", "-t", str(a.wrk_threads), "-c", str(conns), "-d", f"{int(a.seconds)}s", "--latency",
                                   "-s", script, a.reads_at or base], capture_output=True, text=True).stdout

        m0, cpu0, kids0 = scrape(), cpu_seconds(), cpu_seconds(children=True)
        with ThreadPoolExecutor(clients + 2) as ex:
            churners = [ex.submit(churner, i) for i in range(clients if a.churn > 0 else 0)]
            get_f = ex.submit(wrk, lua, 140)
            page_f = ex.submit(wrk, page, 40)
            get_out, page_out = get_f.result(), page_f.result()
            for c in churners:
                c.result()
        cpu1, kids1, m1 = cpu_seconds(), cpu_seconds(children=True), scrape()

        def summary(name, out, conns):
            lines = {l.split()[0]: l.split()[1] for l in out.splitlines() if l.strip()[:3] in ("50%", "99%")}
            rps = [l for l in out.splitlines() if "Requests/sec" in l]
            errs = [l.strip() for l in out.splitlines() if "Non-2xx" in l or "Socket errors" in l]
            rate = float(rps[0].split()[-1]) if rps else 0
            little = (f"  (Little: mean ≈ {conns / rate * 1000:.1f} ms)" if rate and not a.think_ms
                      else f"  (each connection waits ~{a.think_ms:g} ms between requests)" if a.think_ms else "")
            print(f"{name:22s} p50 {lines.get('50%', '?'):>9s}  p99 {lines.get('99%', '?'):>9s}  "
                  f"{rps[0].split()[-1] if rps else '?'} req/s (goal p99 < 50 ms){little} {' '.join(errs)}")

        def buckets(text, route):
            out = {}
            for line in text.splitlines():
                if (line.startswith("devbox_http_request_duration_seconds_bucket{") and 'method="GET"' in line
                        and f'route="{route}"' in line and 'status="200"' in line):
                    le = line.split('le="')[1].split('"')[0]
                    out[float(le)] = float(line.rsplit(" ", 1)[1])
            return out

        def server_view(name, route):
            b0, b1 = buckets(m0, route), buckets(m1, route)
            d = sorted((le, b1[le] - b0.get(le, 0)) for le in b1)
            n = d[-1][1] if d else 0

            def q(p):
                return next((f"≤ {le * 1000:g} ms" for le, c in d if c >= n * p / 100), "?")
            print(f"{name:22s} in the service (/metrics): n={int(n)}  p50 {q(50)}  p99 {q(99)}")
            return n

        summary("GET by id (140 conns)", get_out, 140)
        summary("list page (40 conns)", page_out, 40)
        served = server_view("GET by id", "/api/v1/devboxes/{id}") + server_view("list page", "/api/v1/devboxes")
        print(f"serve CPU {cpu1 - cpu0:.1f} s over the window: {(cpu1 - cpu0) * 1e6 / max(served, 1):.0f} µs per read "
              f"served (churn and box work included); its reaped children (crun, mkfs, …) {kids1 - kids0:.1f} s")
        xs = churn["lat"]
        print(f"create+delete ({clients} clients) n={len(xs)}  p50 {pct(xs, 50):.1f} ms  p99 {pct(xs, 99):.1f} ms  "
              f"errors {churn['errors']}")
    finally:
        # Every devbox goes before the serve stops (a stopped serve keeps ready boxes running).
        try:
            s = requests.Session()
            s.headers["X-Provider-Token"] = token
            for d in s.get(base + "/api/v1/devboxes?state=requested&state=provisioning&state=ready&state=stopped&state=failed",
                           timeout=60).json()["devboxes"]:
                s.delete(base + f"/api/v1/devboxes/{d['id']}", timeout=60)
        except requests.RequestException:
            pass
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
