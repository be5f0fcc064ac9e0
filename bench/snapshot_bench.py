#!/usr/bin/env python3
"""Snapshots (issue 23), in one run on one serve:

  1. snapshot time and pause (cgroup freezer) of a running box with 100 MB and 1 GB of
     changes (fresh random bytes in /workspace and the root file system), plus the pause of
     a box with 100 MB of changes and a process appending to a log meanwhile;
  2. create→ready p50 of creates from a snapshot against plain cold creates (no warm pool),
     interleaved;
  3. 10 forks of a box with 200 MB of changes: POST /fork {count: 10} until all 10 are ready.

    DEVBOX_BIN=.build/release/devbox bench/snapshot_bench.py [--creates 15]

The pause and the copy are the service's own figures (its "snapshot taken" log line); the
rest is measured from the client. On ext4 without reflinks every byte is copied: the first
pass runs while the box runs, the frozen pass copies only what changed meanwhile (and walks
the tree's metadata), so the pause grows with the number of files and the bytes written
during the copy, not with the snapshot's size.
"""
import argparse
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "e2e"))
from devbox_harness import Server  # noqa: E402

LOG_RE = re.compile(r"snapshot taken.*")


def exec_ok(s, box, cmd, timeout=600):
    r = s.request("POST", f"/api/v1/devboxes/{box}/exec", json_body={"command": ["/bin/sh", "-c", cmd], "timeout_seconds": timeout},
                  timeout=timeout + 30)
    r.raise_for_status()
    out = r.json()
    assert out["exit_code"] == 0, out
    return out["stdout"]


def ready(s, body):
    t0 = time.perf_counter()
    d = s.create(body)
    d = s.wait_state(d["id"], timeout=300)
    assert d["state"] == "ready", s.operations(d["id"])
    return d, time.perf_counter() - t0


def wait_ready_fast(s, ids, timeout=120):
    """Polls every devbox until ready (GET every 5 ms each)."""
    left = set(ids)
    deadline = time.time() + timeout
    while left and time.time() < deadline:
        for i in list(left):
            st = s.get(i)["state"]
            if st == "ready":
                left.discard(i)
            elif st in ("failed", "destroyed"):
                raise RuntimeError(f"{i} {st}: {s.operations(i)}")
        time.sleep(0.005)
    assert not left, f"not ready: {left}"


def last_snapshot_line(s):
    lines = [l for l in s.log().splitlines() if "snapshot taken" in l]
    line = lines[-1]
    ms = float(re.search(r"\bms[=:] ?\"?([0-9.]+)", line).group(1))
    pause = float(re.search(r"pause_ms[=:] ?\"?([0-9.]+)", line).group(1))
    return ms, pause


def changes(mb):
    """mb MB of fresh bytes: 3/4 in /workspace (64 files), 1/4 in the root file system."""
    ws, root = mb * 3 // 4, mb - mb * 3 // 4
    return (f"mkdir -p /workspace/data /opt/data && for i in $(seq 1 64); do head -c {ws * 1000000 // 64} /dev/urandom"
            f" > /workspace/data/f$i; done && head -c {root * 1000000} /dev/urandom > /opt/data/blob && sync")


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--creates", type=int, default=15)
    ap.add_argument("--big-mb", type=int, default=1000)
    a = ap.parse_args()
    s = Server(env={"DEVBOX_WARM_POOL": "0", "DEVBOX_LOG_LEVEL": "info"}).start()
    results = {}
    try:
        # 1. Snapshot time and pause.
        for mb in (100, a.big_mb):
            d, _ = ready(s, {"name": f"snap-{mb}"})
            exec_ok(s, d["id"], changes(mb))
            t0 = time.perf_counter()
            r = s.request("POST", f"/api/v1/devboxes/{d['id']}/snapshots", json_body={"name": f"bench-{mb}"}, timeout=600)
            wall = time.perf_counter() - t0
            assert r.status_code == 201, r.text
            ms, pause = last_snapshot_line(s)
            results[f"snapshot_{mb}mb"] = {"wall_s": round(wall, 3), "copy_ms": ms, "pause_ms": pause,
                                           "size_bytes": r.json()["size_bytes"]}
            print(f"snapshot of {mb} MB of changes: {wall:.2f} s wall (copy {ms:.0f} ms), pause {pause:.2f} ms, "
                  f"size {r.json()['size_bytes'] / 1e6:.0f} MB", flush=True)
            s.request("DELETE", f"/api/v1/devboxes/{d['id']}")
        # Many small files (a node_modules): the frozen pass walks every entry's metadata.
        d, _ = ready(s, {"name": "snap-files"})
        exec_ok(s, d["id"], "python3 -c 'import os\nfor i in range(200):\n d=f\"/workspace/nm/p{i}\"; os.makedirs(d)\n"
                            " for j in range(100): open(f\"{d}/f{j}.js\",\"wb\").write(os.urandom(1000))'")
        r = s.request("POST", f"/api/v1/devboxes/{d['id']}/snapshots", json_body={"name": "bench-files"}, timeout=600)
        assert r.status_code == 201, r.text
        ms, pause = last_snapshot_line(s)
        results["snapshot_20k_files"] = {"copy_ms": ms, "pause_ms": pause, "size_bytes": r.json()["size_bytes"]}
        print(f"snapshot of 20,000 files of 1 KB (200 directories): copy {ms:.0f} ms, pause {pause:.2f} ms", flush=True)
        s.request("DELETE", f"/api/v1/devboxes/{d['id']}")
        # With a writer appending while the snapshot is taken.
        d, _ = ready(s, {"name": "snap-writer"})
        exec_ok(s, d["id"], changes(100) + " && setsid -f sh -c 'while :; do echo line-of-log-$(date +%s%N) >> /workspace/log;"
                            " done' </dev/null >/dev/null 2>&1")
        time.sleep(0.5)
        r = s.request("POST", f"/api/v1/devboxes/{d['id']}/snapshots", json_body={"name": "bench-writer"}, timeout=600)
        assert r.status_code == 201, r.text
        ms, pause = last_snapshot_line(s)
        results["snapshot_100mb_with_writer"] = {"copy_ms": ms, "pause_ms": pause}
        print(f"snapshot of 100 MB with a process appending to a log: copy {ms:.0f} ms, pause {pause:.2f} ms", flush=True)
        s.request("DELETE", f"/api/v1/devboxes/{d['id']}")

        # 2. create-from-snapshot vs plain cold create (interleaved).
        plain, from_snap = [], []
        for i in range(a.creates):
            # Alternating which goes first: the first of a pair may find a ready disk the second must format.
            if i % 2 == 0:
                d1, t1 = ready(s, {"name": f"plain-{i}"})
                d2, t2 = ready(s, {"name": f"fromsnap-{i}", "snapshot": "bench-100"})
            else:
                d2, t2 = ready(s, {"name": f"fromsnap-{i}", "snapshot": "bench-100"})
                d1, t1 = ready(s, {"name": f"plain-{i}"})
            plain.append(t1)
            from_snap.append(t2)
            s.request("DELETE", f"/api/v1/devboxes/{d1['id']}")
            s.request("DELETE", f"/api/v1/devboxes/{d2['id']}")
        p50p, p50s = statistics.median(plain), statistics.median(from_snap)
        results["create"] = {"plain_cold_p50_ms": round(p50p * 1000, 1), "from_snapshot_p50_ms": round(p50s * 1000, 1),
                             "ratio": round(p50s / p50p, 2), "n": a.creates}
        print(f"create→ready (client, poll): plain cold p50 {p50p * 1000:.1f} ms, from a 100 MB snapshot p50"
              f" {p50s * 1000:.1f} ms ({p50s / p50p:.2f}×), n={a.creates} each", flush=True)

        # 3. 10 forks of a box with 200 MB of changes.
        d, _ = ready(s, {"name": "fork-200"})
        exec_ok(s, d["id"], changes(200))
        t0 = time.perf_counter()
        r = s.request("POST", f"/api/v1/devboxes/{d['id']}/fork", json_body={"count": 10, "name": "bench-fork"}, timeout=600)
        assert r.status_code == 201, r.text
        t_fork = time.perf_counter() - t0
        ids = [x["id"] for x in r.json()["devboxes"]]
        wait_ready_fast(s, ids)
        total = time.perf_counter() - t0
        ms, pause = last_snapshot_line(s)
        results["fork_10_of_200mb"] = {"all_ready_s": round(total, 3), "fork_answer_s": round(t_fork, 3), "copy_ms": ms, "pause_ms": pause}
        print(f"10 forks of a box with 200 MB of changes: all ready in {total:.2f} s (fork answered in {t_fork:.2f} s;"
              f" copy {ms:.0f} ms, pause {pause:.2f} ms)", flush=True)
        check = exec_ok(s, ids[-1], "ls /workspace/data | wc -l; stat -c %s /opt/data/blob").split()
        assert check == ["64", str(50_000_000)], check
        print(results)
    finally:
        for x in s.request("GET", "/api/v1/snapshots").json().get("snapshots", []):
            s.request("DELETE", f"/api/v1/snapshots/{x['id']}")
        s.close()


if __name__ == "__main__":
    main()
