#!/usr/bin/env python3
"""The list under churn (issue 21): after ~1,000 create/delete cycles, 200 concurrent clients
mix GET by id, paged lists of live devboxes and create/delete; prints p50/p99 per kind.

    bench/list_bench.py [--cycles 1000] [--clients 200] [--seconds 20]

Starts its own release serve (DEVBOX_BIN, default .build/release/devbox) on a fresh data dir
with no warm pool; devboxes are deleted right after their create (no box is started for most
of them), so the figures are the API's and the database's, not crun's. Goal: p99 < 50 ms.
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
    ap.add_argument("--churn", type=float, default=0.1, help="share of the mix that creates and deletes (0: reads only)")
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

        lat = {"get": [], "list_page": [], "create_delete": []}
        errors = [0]
        lock = threading.Lock()
        stop = time.time() + a.seconds

        def client(_):
            s = session()
            rnd = random.Random()
            while time.time() < stop:
                roll = rnd.random()
                t = time.perf_counter()
                try:
                    if roll < 0.7 * (1 - a.churn) / 0.9:
                        kind = "get"
                        s.get(base + f"/api/v1/devboxes/{rnd.choice(live)}", timeout=30).raise_for_status()
                    elif roll < 1 - a.churn:
                        kind = "list_page"
                        s.get(base + "/api/v1/devboxes?state=requested&state=provisioning&state=ready&limit=50",
                              timeout=30).raise_for_status()
                    else:
                        kind = "create_delete"
                        r = s.post(base + "/api/v1/devboxes", json={"name": "mix"}, timeout=30)
                        r.raise_for_status()
                        s.delete(base + f"/api/v1/devboxes/{r.json()['id']}", timeout=30).raise_for_status()
                except requests.RequestException:
                    with lock:
                        errors[0] += 1
                    continue
                with lock:
                    lat[kind].append((time.perf_counter() - t) * 1000)

        with ThreadPoolExecutor(a.clients) as ex:
            list(ex.map(client, range(a.clients)))
        for kind, xs in lat.items():
            print(f"{kind:14s} n={len(xs):6d}  p50 {pct(xs, 50):7.1f} ms  p99 {pct(xs, 99):7.1f} ms"
                  + ("  (goal p99 < 50 ms)" if kind != "create_delete" else ""))
        print(f"errors: {errors[0]}")
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
