#!/usr/bin/env python3
"""Runs a private OpenSSH sshd and a `devbox serve` side by side and compares them:
connect + `exec true` latency, and throughput of 1 GiB through one channel.
Standard library only. Called by bench/ssh_bench.sh (which installs and builds)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

GIB = 1 << 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


class Target:
    def __init__(self, name: str, port: int, user: str, key: str, extra: list[str] | None = None):
        self.name, self.port, self.user, self.key, self.extra = name, port, user, key, extra or []

    def argv(self, command: str) -> list[str]:
        return ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes",
                "-i", self.key, "-p", str(self.port), *self.extra, f"{self.user}@127.0.0.1", command]

    def latency(self) -> float:
        t0 = time.perf_counter()
        r = subprocess.run(self.argv("true"), stdin=subprocess.DEVNULL, capture_output=True)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(f"{self.name}: ssh true failed: {r.stderr.decode()}")
        return dt

    def throughput(self) -> float:
        """MiB/s of `head -c 1GiB /dev/zero` read by this process from ssh's stdout."""
        t0 = time.perf_counter()
        p = subprocess.Popen(self.argv(f"head -c {GIB} /dev/zero"), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        got = 0
        while chunk := p.stdout.read1(1 << 20):
            got += len(chunk)
        p.wait()
        dt = time.perf_counter() - t0
        if p.returncode != 0 or got != GIB:
            raise RuntimeError(f"{self.name}: got {got} bytes, rc {p.returncode}: {p.stderr.read().decode()}")
        return GIB / (1 << 20) / dt


def api(base: str, token: str, method: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"X-Provider-Token": token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
        return json.loads(raw) if raw else {}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devbox", required=True)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--throughput-runs", type=int, default=3)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="devbox-sshbench-")
    procs: list[subprocess.Popen] = []
    box = None
    base = token = ""
    try:
        key = os.path.join(tmp, "id")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        pub = open(key + ".pub").read().strip()

        # -- reference: private sshds for root on 127.0.0.1, their own host key ---------------------
        # Two of them: one as the host is (root's ~/.bashrc runs for every command, as sshd's
        # bash sources it), and one whose /root is an empty tmpfs in a private mount
        # namespace, as a box's /root is: the fair comparison.
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{tmp}/host"], check=True)
        with open(f"{tmp}/authorized_keys", "w") as f:
            f.write(pub + "\n")
        os.makedirs("/run/sshd", exist_ok=True)
        sshd_ports = {}
        for variant in ("host", "clean"):
            port = sshd_ports[variant] = free_port()
            conf = f"{tmp}/sshd_config_{variant}"
            with open(conf, "w") as f:
                f.write(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {tmp}/host
PidFile {tmp}/sshd_{variant}.pid
AuthorizedKeysFile {tmp}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
Subsystem sftp /usr/lib/openssh/sftp-server
""")
            sshd = ["/usr/sbin/sshd", "-D", "-f", conf, "-E", f"{tmp}/sshd_{variant}.log"]
            if variant == "clean":
                sshd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        "mount -t tmpfs -o mode=0700 tmpfs /root && exec \"$@\"", "sh", *sshd]
            procs.append(subprocess.Popen(sshd))
            wait_port(port)

        # -- devbox serve: a box, the key, a session ------------------------------------------------
        data = f"{tmp}/data"
        http_port, gw_port = free_port(), free_port()
        token = subprocess.run([args.devbox, "token", "create", "--data-dir", data, "--name", "bench"],
                               capture_output=True, text=True, check=True).stdout.strip()
        log = open(f"{tmp}/serve.log", "wb")
        procs.append(subprocess.Popen(
            [args.devbox, "serve", "--data-dir", data, "--http", f"127.0.0.1:{http_port}", "--ssh", f"127.0.0.1:{gw_port}"],
            stdout=log, stderr=log, env={**os.environ, "DEVBOX_LOG_LEVEL": "warning"}))
        wait_port(http_port)
        wait_port(gw_port)
        base = f"http://127.0.0.1:{http_port}"
        api(base, token, "PUT", "/api/v1/users/me/ssh-key", {"public_key": pub})
        box = api(base, token, "POST", "/api/v1/devboxes", {"name": "bench"})["id"]
        deadline = time.time() + 120
        while (state := api(base, token, "GET", f"/api/v1/devboxes/{box}")["state"]) != "ready":
            if state in ("failed", "destroyed") or time.time() > deadline:
                raise RuntimeError(f"devbox is {state}")
            time.sleep(0.1)
        session = api(base, token, "POST", f"/api/v1/devboxes/{box}/access/session")["session_id"]

        sshd = Target("sshd", sshd_ports["clean"], "root", key)
        sshd_host = Target("sshd (host ~/.bashrc)", sshd_ports["host"], "root", key)
        gateway = Target("gateway", gw_port, session, key)
        sshd_gcm = Target("sshd (aes128-gcm)", sshd_ports["clean"], "root", key, ["-c", "aes128-gcm@openssh.com"])

        # -- latency: interleaved, after a warm-up ---------------------------------------------------
        for t in (sshd, sshd_host, gateway):
            for _ in range(3):
                t.latency()
        lat: dict[str, list[float]] = {"sshd": [], "sshd_host": [], "gateway": []}
        for _ in range(args.runs):
            lat["sshd"].append(sshd.latency())
            lat["sshd_host"].append(sshd_host.latency())
            lat["gateway"].append(gateway.latency())

        # -- throughput: best of N each --------------------------------------------------------------
        thr: dict[str, list[float]] = {"sshd": [], "gateway": [], "sshd_gcm": []}
        for _ in range(args.throughput_runs):
            thr["sshd"].append(sshd.throughput())
            thr["sshd_gcm"].append(sshd_gcm.throughput())
            thr["gateway"].append(gateway.throughput())

        def pct(xs: list[float], p: float) -> float:
            xs = sorted(xs)
            return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]

        ms = lambda s: s * 1000
        p50s, p50g = statistics.median(lat["sshd"]), statistics.median(lat["gateway"])
        print(f"connect + exec true, {args.runs} runs each, interleaved (ms):")
        labels = {"sshd": "sshd (clean /root)", "sshd_host": "sshd (host /root)", "gateway": "gateway"}
        for name in ("sshd", "sshd_host", "gateway"):
            xs = lat[name]
            print(f"  {labels[name]:20s} p50 {ms(statistics.median(xs)):7.1f}   p90 {ms(pct(xs, 0.9)):7.1f}   "
                  f"min {ms(min(xs)):7.1f}")
        print(f"  gateway/sshd p50 ratio: {p50g / p50s:.2f} (goal <= 1.00); "
              f"vs sshd with host /root: {p50g / statistics.median(lat['sshd_host']):.2f}")
        bs, bg, bgcm = max(thr["sshd"]), max(thr["gateway"]), max(thr["sshd_gcm"])
        print(f"throughput, 1 GiB through one channel, best of {args.throughput_runs} (MiB/s):")
        print(f"  sshd (default cipher)   {bs:8.1f}   runs {', '.join(f'{x:.0f}' for x in thr['sshd'])}")
        print(f"  sshd (aes128-gcm)       {bgcm:8.1f}   runs {', '.join(f'{x:.0f}' for x in thr['sshd_gcm'])}")
        print(f"  gateway                 {bg:8.1f}   runs {', '.join(f'{x:.0f}' for x in thr['gateway'])}")
        print(f"  gateway/sshd ratio: {bg / bs:.2f}  (goal >= 0.50); vs sshd aes128-gcm: {bg / bgcm:.2f}")
        return 0
    finally:
        if box:
            try:
                api(base, token, "DELETE", f"/api/v1/devboxes/{box}")
                deadline = time.time() + 30
                while api(base, token, "GET", f"/api/v1/devboxes/{box}")["state"] != "destroyed" and time.time() < deadline:
                    time.sleep(0.1)
            except Exception as e:  # the service may already be gone
                print(f"cleanup: {e}", file=sys.stderr)
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
