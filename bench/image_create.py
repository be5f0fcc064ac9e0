#!/usr/bin/env python3
"""Issue 18: create→ready on the store's Debian image versus the host-root base
(DEVBOX_BASE_IMAGE=host), cold (DEVBOX_WARM_POOL=0) and warm (a pool, full before each
create). Sequential creates without setup commands, each waited for with GET …/wait.

    DEVBOX_BIN=.build/release/devbox .venv/bin/python bench/image_create.py [-n 20]
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Tests", "e2e"))
from devbox_harness import Server  # noqa: E402


def run(base_image: str | None, pool: int, n: int) -> list[float]:
    env = {"DEVBOX_WARM_POOL": str(pool), "DEVBOX_LOG_LEVEL": "notice"}
    if base_image:
        env["DEVBOX_BASE_IMAGE"] = base_image
    s = Server(env=env).start()
    try:
        times = []
        for i in range(n):
            if pool:
                s.wait_pool_full()
            t0 = time.perf_counter()
            d = s.create({"name": f"b{i}"})
            r = s.request("GET", f"/api/v1/devboxes/{d['id']}/wait?timeout_seconds=60", timeout=90)
            assert r.json()["state"] == "ready", r.text
            times.append((time.perf_counter() - t0) * 1000)
            s.request("DELETE", f"/api/v1/devboxes/{d['id']}")
        return times
    finally:
        try:
            s.close()
        except AssertionError as e:   # another serve on the machine may hold the same range by now
            print(f"  (close: {e})", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20)
    a = ap.parse_args()
    for label, base in (("debian image", None), ("host root", "host")):
        for kind, pool in (("cold", 0), ("warm", 4)):
            t = run(base, pool, a.n)
            print(f"{label:13} {kind}: p50 {statistics.median(t):6.1f} ms  p90 {sorted(t)[int(0.9 * (len(t) - 1))]:6.1f} ms"
                  f"  min {min(t):6.1f} ms  (n={len(t)})", flush=True)


if __name__ == "__main__":
    main()
