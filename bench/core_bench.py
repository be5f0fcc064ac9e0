#!/usr/bin/env python3
"""Issue 2 benchmarks against a running release `devbox serve`:

  create→ready with one `true` setup command, 50 sequential and 20 concurrent, versus a
  bare `crun run -d` + `crun exec true` of the same bundle in the same run; GET
  /api/v1/devboxes/:id with wrk at 64 connections; idle RSS of serve and host memory of
  idle devboxes. Prints figures and ratios; exits non-zero only on errors, not on goals.

  --pool N: the serve runs with DEVBOX_WARM_POOL=N; each create and each burst waits for a
  full pool first, and the share of creates served from it is printed.
"""
import argparse
import concurrent.futures as cf
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import requests


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


class API:
    def __init__(self, base, token):
        self.base, self.h = base, {"X-Provider-Token": token}
        self.s = requests.Session()

    def create(self, body):
        r = self.s.post(self.base + "/api/v1/devboxes", json=body, headers=self.h)
        r.raise_for_status()
        return r.json()

    def get(self, i):
        return self.s.get(f"{self.base}/api/v1/devboxes/{i}", headers=self.h).json()

    def delete(self, i):
        self.s.delete(f"{self.base}/api/v1/devboxes/{i}", headers=self.h)


def create_ready(api, mode="server", poll=0.002):
    """POST, then wait for ready: `server` blocks in GET …/wait (the service answers when the
    devbox settles), `poll` GETs the devbox every `poll` seconds (what a plain client does)."""
    t0 = time.perf_counter()
    d = api.create({"name": "bench", "setup_commands": ["true"]})
    while True:
        if mode == "server":
            st = api.s.get(f"{api.base}/api/v1/devboxes/{d['id']}/wait", params={"timeout_seconds": 60},
                           headers=api.h).json()["state"]
        else:
            st = api.get(d["id"])["state"]
        if st in ("ready", "failed"):
            return time.perf_counter() - t0, st, d["id"]
        if mode != "server":
            time.sleep(poll)


def bare_crun(bundle_src, n, concurrent=1):
    """crun run -d + crun exec true of a copy of a devbox's bundle (same rootfs, own cgroup).
    With concurrent > 1, that many run at once (the fair reference for concurrent creates)."""
    cfg = json.load(open(os.path.join(bundle_src, "config.json")))

    # A box's bundle names its root, mounts and user namespace relative to its directory
    # (crun resolves them there before it joins the box's user namespace, whose root cannot
    # cross the data dir's 0700): the copy lives in a directory inside the box's, with
    # every relative path one level up.
    def up(p):
        return p if p.startswith("/") else os.path.join("..", p)

    def one(k):
        d = tempfile.mkdtemp(prefix="bench-bare-", dir=bundle_src)
        os.chmod(d, 0o711)
        c = dict(cfg)
        c["root"] = {"path": up(cfg["root"]["path"]), "readonly": cfg["root"].get("readonly", False)}
        c["mounts"] = [dict(m, source=up(m["source"])) if m.get("source") and "bind" in (m.get("options") or []) + [m.get("type", "")]
                       else m for m in cfg.get("mounts", [])]
        # The plain pause init (a devbox with setup commands runs its setup shell instead).
        c["process"] = dict(cfg["process"], args=["/.devbox/init", "-P"])
        c["linux"] = dict(cfg["linux"])
        c["linux"]["cgroupsPath"] = f"/devbox-bench/bare{k}"
        c["linux"]["namespaces"] = [dict(n, path=up(n["path"])) if n.get("path") else n
                                    for n in cfg["linux"].get("namespaces", [])]
        json.dump(c, open(os.path.join(d, "config.json"), "w"))
        name = f"devbox-bench-bare-{os.getpid()}-{k}"
        t0 = time.perf_counter()
        subprocess.run(["crun", "run", "-d", "--bundle", d, name], check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["crun", "exec", name, "true"], check=True)
        elapsed = time.perf_counter() - t0
        return elapsed, name, d

    times, made = [], []
    try:
        if concurrent > 1:
            with cf.ThreadPoolExecutor(concurrent) as ex:
                made = list(ex.map(one, range(n)))
            times = [m[0] for m in made]
        else:
            for k in range(n):
                m = one(k)
                times.append(m[0])
                subprocess.run(["crun", "delete", "-f", m[1]], check=True)
                shutil.rmtree(m[2])
    finally:
        if concurrent > 1:
            for _, name, d in made:
                subprocess.run(["crun", "delete", "-f", name])
                shutil.rmtree(d, ignore_errors=True)
    for h in os.listdir("/sys/fs/cgroup"):
        p = f"/sys/fs/cgroup/{h}/devbox-bench"
        if os.path.isdir(p):
            for k in os.listdir(p):
                if os.path.isdir(os.path.join(p, k)):
                    os.rmdir(os.path.join(p, k))
            os.rmdir(p)
    return times


def box_name(data_dir, devbox_id):
    """The box (container, cgroup, directory) of a devbox: its own, or the pooled box it took."""
    boxes = os.path.join(data_dir, "boxes")
    entry = [b for b in os.listdir(boxes) if b.endswith(devbox_id)][0]
    path = os.path.join(boxes, entry)
    return os.readlink(path) if os.path.islink(path) else entry


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--sequential", type=int, default=50)
    ap.add_argument("--concurrent", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3, help="concurrent bursts of each kind")
    ap.add_argument("--pool", type=int, default=0, help="the serve's DEVBOX_WARM_POOL")
    ap.add_argument("--no-extras", action="store_true", help="skip idle memory and wrk")
    a = ap.parse_args()
    api = API(a.base, a.token)
    warm = {"pooled": 0, "all": 0}

    def pool_full():
        """With a pool: wait until it is full (it refills once creates pause for 300 ms)."""
        if a.pool <= 0:
            return
        deadline = time.time() + 120
        while time.time() < deadline:
            p = api.s.get(a.base + "/healthz").json()["warm_pool"]
            if p["ready"] >= p["size"]:
                return
            time.sleep(0.02)
        raise RuntimeError("the warm pool did not fill")

    def count_warm(ids):
        for i in ids:
            ops = api.s.get(f"{a.base}/api/v1/devboxes/{i}/operations", headers=api.h).json()["operations"]
            warm["pooled"] += "warm pool" in ops[0]["output"]
            warm["all"] += 1

    idle_rss = rss_kib(a.pid)
    print(f"idle serve RSS: {idle_rss / 1024:.1f} MiB (goal < 50 MiB)")

    # warm-up (page cache, first-use paths); one box stays as the bare runs' bundle
    for _ in range(3):
        _, _, i = create_ready(api)
        api.delete(i)
    _, _, keep = create_ready(api)
    boxes = os.path.join(a.data_dir, "boxes")
    bundle = [os.path.join(boxes, b) for b in os.listdir(boxes) if b.endswith(keep)][0]

    # Sequential, interleaved so that drifts of this noisy machine hit all three alike.
    seq = {"server": [], "poll": []}
    bare, failures = [], 0
    for _ in range(a.sequential):
        for mode in ("server", "poll"):
            pool_full()
            t, st, i = create_ready(api, mode)
            failures += st != "ready"
            seq[mode].append(t)
            count_warm([i])
            api.delete(i)
        bare += bare_crun(bundle, 1)

    def concurrent(mode):
        pool_full()
        with cf.ThreadPoolExecutor(a.concurrent) as ex:
            t0 = time.perf_counter()
            res = list(ex.map(lambda _: create_ready(API(a.base, a.token), mode), range(a.concurrent)))
            wall = time.perf_counter() - t0
        count_warm([r[2] for r in res])
        for r in res:
            api.delete(r[2])
        time.sleep(1)  # deletes finish
        return [r[0] for r in res], sum(r[1] != "ready" for r in res), wall

    # Concurrent bursts: rounds of bare, wait, poll, so each round's ratio compares bursts
    # run seconds apart; the figures are the medians over the rounds.
    rounds = {"bare": [], "server": [], "poll": []}
    walls = {"server": [], "poll": []}
    for _ in range(a.rounds):
        rounds["bare"].append(bare_crun(bundle, a.concurrent, concurrent=a.concurrent))
        for mode in ("server", "poll"):
            c, f, w = concurrent(mode)
            failures += f
            rounds[mode].append(c)
            walls[mode].append(w)
    conc = {}
    for mode in ("server", "poll"):
        # The round with the median ratio is the one reported in full.
        ratios = [statistics.median(c) / statistics.median(b) for c, b in zip(rounds[mode], rounds["bare"])]
        mid = sorted(range(a.rounds), key=lambda k: ratios[k])[len(ratios) // 2]
        conc[mode] = (rounds[mode][mid], 0, walls[mode][mid], ratios, rounds["bare"][mid])

    b50 = statistics.median(bare)
    print(f"bare crun run -d + exec true (same bundle), {len(bare)} sequential: p50 {b50*1000:.1f} ms  p95 {pct(bare,95)*1000:.1f} ms")
    print(f"bare crun, {a.concurrent} concurrent (same bundle), p50 per round: "
          + ", ".join(f"{statistics.median(b)*1000:.0f}" for b in rounds["bare"]) + " ms")
    for mode, how in (("server", "waiting with GET …/wait"), ("poll", "polling GET every 2 ms")):
        s = seq[mode]
        c, _, wall, ratios, bc = conc[mode]
        print(f"create→ready, {a.sequential} sequential, {how}: p50 {statistics.median(s)*1000:.1f} ms  "
              f"p95 {pct(s,95)*1000:.1f} ms  ratio p50/bare {statistics.median(s)/b50:.2f}x (goal < 100 ms, < 1.5x)")
        # The goal line (p50 < 100 ms) also covers this run; the bare burst is printed
        # next to it because on 2 cores it is above 100 ms by itself.
        print(f"create→ready, {a.concurrent} concurrent, {how}: median round p50 {statistics.median(c)*1000:.1f} ms "
              f"(goal < 100 ms)  p95 {pct(c,95)*1000:.1f} ms  wall {wall*1000:.0f} ms  vs that round's bare p50 "
              f"{statistics.median(bc)*1000:.0f} ms: ratio {statistics.median(c)/statistics.median(bc):.2f}x (goal < 1.5x); ratio per round "
              + ", ".join(f"{r:.2f}" for r in ratios))
        # Every create of every round against every bare run of every round: steadier than
        # any single round on this noisy machine.
        pooled, bare_pooled = [t for r in rounds[mode] for t in r], [t for r in rounds["bare"] for t in r]
        print(f"  all {len(pooled)} concurrent creates pooled: p50 {statistics.median(pooled)*1000:.1f} ms  "
              f"p95 {pct(pooled,95)*1000:.1f} ms  vs all bare p50 {statistics.median(bare_pooled)*1000:.1f} ms: "
              f"ratio {statistics.median(pooled)/statistics.median(bare_pooled):.2f}x")
    print(f"failures: {failures} (goal 0)")
    if a.pool > 0:
        print(f"creates served from the warm pool: {warm['pooled']} of {warm['all']}")
    if a.no_extras:
        api.delete(keep)
        return

    # idle devbox memory: 10 idle boxes, cgroup usage each and serve RSS growth
    ids = [create_ready(api)[2] for _ in range(10)]
    time.sleep(1)
    usages = []
    for i in ids:
        for cg in subprocess.run(["sh", "-c", f"ls -d /sys/fs/cgroup/memory/*/{box_name(a.data_dir, i)}"], capture_output=True,
                                 text=True).stdout.split():
            usages.append(int(open(cg + "/memory.usage_in_bytes").read()))
    if usages:
        print(f"idle devbox host memory (cgroup usage, incl. kernel + init): median "
              f"{statistics.median(usages)/1024:.0f} KiB (goal < 1 MiB)")
    print(f"serve RSS with 10 idle devboxes: {rss_kib(a.pid)/1024:.1f} MiB")

    # GET /api/v1/devboxes/:id with wrk, 64 connections
    if shutil.which("wrk"):
        out = subprocess.run(["wrk", "-t2", "-c64", "-d10s", "--latency", "-H", f"X-Provider-Token: {a.token}",
                              f"{a.base}/api/v1/devboxes/{keep}"], capture_output=True, text=True).stdout
        rps = [l for l in out.splitlines() if "Requests/sec" in l]
        p99 = [l for l in out.splitlines() if l.strip().startswith("99%")]
        non2xx = [l for l in out.splitlines() if "Non-2xx" in l]
        print(f"wrk GET devbox, 64 connections: {rps[0].split()[-1] if rps else '?'} req/s, "
              f"p99 {p99[0].split()[-1] if p99 else '?'} (goal ≥ 5000 req/s, p99 < 20 ms) {non2xx}")
    for i in ids + [keep]:
        api.delete(i)


def delete_all(base, token):
    api = API(base, token)
    for d in api.s.get(f"{base}/api/v1/devboxes", headers=api.h).json().get("devboxes", []):
        if d["state"] != "destroyed":
            api.delete(d["id"])


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        # Whatever happened, leave no box behind (the serve is stopped next).
        args = sys.argv
        delete_all(args[args.index("--base") + 1], args[args.index("--token") + 1])
