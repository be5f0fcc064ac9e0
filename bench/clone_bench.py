#!/usr/bin/env python3
"""Issue 4 benchmark: cloning a ~50 MB / 5,000-file private repository into a devbox
versus a plain `git clone` of the same repository from the same local smart-HTTP git
server (Tests/e2e/fake_github.py, `git http-backend`), with the same token, in one run.

The devbox figure is the clone_repositories operation (started_at → finished_at), which
includes the GitHub access check, the clone, the checkout and the move into the
workspace; create→ready is printed beside it. Runs alternate between the two to share
the machine's state fairly. Prints medians and the ratio; exits non-zero only on errors.
"""
import argparse
import base64
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime

import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "e2e"))
from fake_github import FakeGitHub, git  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_big_repo(fake: FakeGitHub, full_name: str, files: int, size: int) -> None:
    work = tempfile.mkdtemp(prefix="bench-repo-", dir=fake.tmp)
    git("init", "--quiet", "-b", "main", work)
    for i in range(files):
        d = os.path.join(work, f"dir{i % 50:02d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"file{i:05d}.bin"), "wb") as fh:
            fh.write(os.urandom(size))  # incompressible: the pack is as large as the tree
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "big tree", cwd=work)
    fake.publish(full_name, work)
    shutil.rmtree(work, ignore_errors=True)


def parse(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--file-size", type=int, default=10 * 1024)
    args = ap.parse_args()

    fake = FakeGitHub().start()
    fake.add_user("alice", 1001)
    fake.add_repo("alice/big", private=True)
    t0 = time.perf_counter()
    build_big_repo(fake, "alice/big", args.files, args.file_size)
    pack = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(fake.git_dir("alice/big")) for f in fs)
    print(f"repository: {args.files} files x {args.file_size} B, bare repository {pack / 1e6:.1f} MB "
          f"(built in {time.perf_counter() - t0:.1f} s)")

    tmp = tempfile.mkdtemp(prefix="devbox-clone-bench-")
    data = os.path.join(tmp, "data")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, DEVBOX_LOG_LEVEL="warning", DEVBOX_GITHUB_CLIENT_ID=fake.client_id,
               DEVBOX_GITHUB_CLIENT_SECRET=fake.client_secret, DEVBOX_GITHUB_URL=fake.base,
               DEVBOX_GITHUB_API_URL=fake.api_base, DEVBOX_PUBLIC_URL=base,
               DEVBOX_OAUTH_REDIRECT_ALLOWLIST="http://127.0.0.1:9/")
    token = subprocess.run([args.bin, "token", "create", "--data-dir", data], capture_output=True, text=True,
                           check=True, env=env).stdout.strip()
    log = open(os.path.join(tmp, "serve.log"), "wb")
    serve = subprocess.Popen([args.bin, "serve", "--data-dir", data, "--http", f"127.0.0.1:{port}",
                              "--ssh", f"127.0.0.1:{free_port()}"], stdout=log, stderr=log, env=env)
    h = {"X-Provider-Token": token}
    try:
        for _ in range(300):
            try:
                if requests.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        # connect GitHub through the OAuth round trip
        start = requests.post(base + "/api/v1/integrations/github/connect", json={"redirect_url": "http://127.0.0.1:9/"},
                              headers=h).json()
        cb = requests.get(start["authorization_url"], allow_redirects=False).headers["Location"]
        assert requests.get(cb, allow_redirects=False).status_code == 302
        gh_token = fake.issued[-1]
        header = "Authorization: Basic " + base64.b64encode(f"x-access-token:{gh_token}".encode()).decode()
        git_env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null",
                       GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0=f"http.{fake.base}/.extraHeader", GIT_CONFIG_VALUE_0=header)
        url = f"{fake.base}/alice/big.git"

        plain, boxed, ready = [], [], []
        for i in range(args.runs):
            dest = os.path.join(tmp, f"plain-{i}")  # same filesystem as the data directory
            t = time.perf_counter()
            subprocess.run(["git", "clone", "--quiet", url, dest], check=True, env=git_env)
            plain.append(time.perf_counter() - t)
            shutil.rmtree(dest)

            t = time.perf_counter()
            d = requests.post(base + "/api/v1/devboxes", headers=h,
                              json={"name": f"clone-{i}", "repositories": [{"full_name": "alice/big"}]}).json()
            while True:
                d = requests.get(f"{base}/api/v1/devboxes/{d['id']}", headers=h).json()
                if d["state"] in ("ready", "failed"):
                    break
                time.sleep(0.01)
            ready.append(time.perf_counter() - t)
            ops = requests.get(f"{base}/api/v1/devboxes/{d['id']}/operations", headers=h).json()["operations"]
            op = [o for o in ops if o["name"] == "clone_repositories"][0]
            if d["state"] != "ready":
                print("devbox failed:", d.get("error"), op.get("output"), file=sys.stderr)
                return 1
            boxed.append(parse(op["finished_at"]) - parse(op["started_at"]))
            requests.delete(f"{base}/api/v1/devboxes/{d['id']}", headers=h)
            print(f"run {i + 1}: plain git clone {plain[-1]:.2f} s, devbox clone_repositories {boxed[-1]:.2f} s, "
                  f"create→ready {ready[-1]:.2f} s")
        p, b = statistics.median(plain), statistics.median(boxed)
        print(f"median: plain git clone {p:.2f} s, devbox clone {b:.2f} s, ratio {b / p:.2f}x (goal <= 1.2x); "
              f"create→ready median {statistics.median(ready):.2f} s")
        return 0
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()
        fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
