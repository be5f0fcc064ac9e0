"""Where the CPU of a burst of concurrent creates goes (issue 2's 20-concurrent figure).

Runs bursts of N creates (one `true` setup command each, waiting with GET …/wait) against a
running serve and, around each burst, reads /proc: the whole machine's busy time, the serve's
own CPU (its threads) and that of its reaped children (crun and its helpers). Deletes every
devbox after each burst, as `make bench` does.

    python3 bench/burst_cpu.py --base http://127.0.0.1:PORT --token TOKEN --pid SERVE_PID [--rounds 3] [--n 20]
"""
import argparse
import concurrent.futures as cf
import time

import requests


def busy_jiffies():
    v = list(map(int, open("/proc/stat").readline().split()[1:]))
    return sum(v) - v[3] - v[4], sum(v)  # busy (all but idle and iowait), total


def proc_jiffies(pid):
    s = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(s[11]) + int(s[12]), int(s[13]) + int(s[14])  # own utime+stime, reaped children's


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=20)
    a = ap.parse_args()
    h = {"X-Provider-Token": a.token}
    tick = 1000 // 100  # ms per jiffy (USER_HZ 100)

    def one(_):
        s = requests.Session()
        t0 = time.perf_counter()
        d = s.post(a.base + "/api/v1/devboxes", json={"name": "burst", "setup_commands": ["true"]}, headers=h).json()
        st = s.get(f"{a.base}/api/v1/devboxes/{d['id']}/wait", params={"timeout_seconds": 60}, headers=h).json()["state"]
        return time.perf_counter() - t0, d["id"], st

    for rnd in range(a.rounds):
        b0, t0 = busy_jiffies()
        p0 = proc_jiffies(a.pid)
        w0 = time.perf_counter()
        with cf.ThreadPoolExecutor(a.n) as ex:
            res = list(ex.map(one, range(a.n)))
        wall = time.perf_counter() - w0
        b1, t1 = busy_jiffies()
        p1 = proc_jiffies(a.pid)
        lat = sorted(r[0] for r in res)
        print(f"round {rnd}: p50 {lat[len(lat) // 2] * 1000:.0f} ms, wall {wall * 1000:.0f} ms; machine busy "
              f"{(b1 - b0) * tick} of {(t1 - t0) * tick} ms CPU; serve's own {(p1[0] - p0[0]) * tick} ms, "
              f"its reaped children {(p1[1] - p0[1]) * tick} ms; states {sorted(set(r[2] for r in res))}")
        for r in res:
            requests.delete(f"{a.base}/api/v1/devboxes/{r[1]}", headers=h)
        time.sleep(2)


if __name__ == "__main__":
    main()
