#!/usr/bin/env python3
"""Where a create's time goes: creates devboxes with one `true` setup command against a
running serve, one after another, and prints the p50 of each phase from the devbox's and
its operations' own timestamps (claim = created_at → provision started; gap_X = previous
operation finished → X started).

    bench/create_phases.py --base http://127.0.0.1:8080 --token "$TOKEN" [--n 20]
"""
import argparse
import statistics
import time
from datetime import datetime

import requests


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--n", type=int, default=20)
    a = ap.parse_args()
    s = requests.Session()
    s.headers["X-Provider-Token"] = a.token
    phases = {}
    for _ in range(a.n):
        t0 = time.perf_counter()
        d = s.post(a.base + "/api/v1/devboxes", json={"name": "phases", "setup_commands": ["true"]}).json()
        t1 = time.perf_counter()
        while True:
            x = s.get(f"{a.base}/api/v1/devboxes/{d['id']}").json()
            if x["state"] in ("ready", "failed"):
                break
            time.sleep(0.002)
        t2 = time.perf_counter()
        ops = s.get(f"{a.base}/api/v1/devboxes/{d['id']}/operations").json()["operations"]
        created = ts(x["created_at"])
        row = {"POST round trip": t1 - t0, "client create→ready": t2 - t0,
               "created_at→ready_at": ts(x["ready_at"]) - created, "claim": ts(ops[0]["started_at"]) - created}
        prev = None
        for o in ops:
            if prev is not None:
                row["gap_" + o["name"]] = ts(o["started_at"]) - prev
            row[o["name"]] = ts(o["finished_at"]) - ts(o["started_at"])
            prev = ts(o["finished_at"])
        row["last step→ready_at"] = ts(x["ready_at"]) - prev
        for k, v in row.items():
            phases.setdefault(k, []).append(v * 1000)
        s.delete(f"{a.base}/api/v1/devboxes/{d['id']}")
        time.sleep(0.3)
    for k, v in phases.items():
        print(f"{k:28} p50 {statistics.median(v):7.1f} ms")


if __name__ == "__main__":
    main()
