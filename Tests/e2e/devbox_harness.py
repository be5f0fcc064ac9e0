"""Starts real `devbox serve` processes for end-to-end tests and talks to them over HTTP."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import requests

BIN = os.environ.get("DEVBOX_BIN") or str(Path(__file__).resolve().parents[2] / ".build/debug/devbox")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def crun_containers() -> list[str]:
    out = subprocess.run(["crun", "list", "-q"], capture_output=True, text=True).stdout
    return [l.strip() for l in out.splitlines() if l.strip()]


def box_hostname(bundle: str) -> str:
    """The devbox id a box directory serves: its /etc/hostname (written in its upper dir for a
    box made cold, and when a box is taken from the warm pool; the upper dir is on the box's
    disk, `disk/upper`, or for a box made before disk quotas right in its directory)."""
    for upper in ("disk/upper", "upper"):
        try:
            return Path(bundle, upper, "etc/hostname").read_text().strip()
        except OSError:
            pass
    return ""


def loop_devices_under(path: str) -> list[str]:
    """Loop devices bound to a file below `path` (`losetup -a`'s view, from sysfs)."""
    found = []
    for name in os.listdir("/sys/block"):
        try:
            backing = Path("/sys/block", name, "loop/backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(path.rstrip("/") + "/"):
            found.append(f"/dev/{name}: {backing}")
    return found


def containers_of(devbox_id: str) -> list[str]:
    """Every running container that is (or was made for) this devbox, however it is named."""
    return [name for name, bundle in crun_bundles().items()
            if name.endswith(devbox_id) or box_hostname(bundle) == devbox_id]


def crun_bundles() -> dict[str, str]:
    """Container name → bundle path, for every container on the machine."""
    out = subprocess.run(["crun", "list"], capture_output=True, text=True).stdout.splitlines()[1:]
    rows = {}
    for line in out:
        parts = line.split()
        if len(parts) >= 4:
            rows[parts[0]] = parts[3]
    return rows


# Every data directory a Server of this test session used: the leak check looks only at
# containers whose bundle lives under one of them (other test runs may share the machine).
DATA_DIRS: set[str] = set()


class Server:
    """One `devbox serve` with its own data dir, ports and log file."""

    def __init__(self, data_dir: str | None = None, env: dict | None = None, token: str | None = None):
        self.tmp = tempfile.mkdtemp(prefix="devbox-e2e-") if data_dir is None else None
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.http_port = free_port()
        self.ssh_port = free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.extra_env = env or {}
        self.log_path = os.path.join(os.path.dirname(self.data_dir), f"serve-{self.http_port}.log")
        self.proc: subprocess.Popen | None = None
        self.token = token
        DATA_DIRS.add(os.path.realpath(self.data_dir))

    # -- process -----------------------------------------------------------------
    def env(self) -> dict:
        e = dict(os.environ)
        e.update({"DEVBOX_LOG_LEVEL": "debug"})
        # The boxes' resolver never asks the machine's real resolvers in a test: nothing
        # listens on 127.0.0.1:9 (a query fails at once); tests that need names run a fake.
        e.setdefault("DEVBOX_DNS_UPSTREAM", "127.0.0.1:9")
        e.update(self.extra_env)
        return e

    def cli(self, *args: str, check: bool = True, input: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
        e = self.env()
        if env:
            e.update(env)
        return subprocess.run([BIN, *args], capture_output=True, text=True, env=e, check=check, input=input, timeout=120)

    def create_token(self, name: str = "default") -> str:
        out = self.cli("token", "create", "--data-dir", self.data_dir, "--name", name).stdout
        return out.strip()

    def start(self, wait: bool = True) -> "Server":
        os.makedirs(self.data_dir, exist_ok=True)
        if self.token is None:
            self.token = self.create_token()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--data-dir", self.data_dir, "--http", f"127.0.0.1:{self.http_port}",
             "--ssh", f"127.0.0.1:{self.ssh_port}"],
            stdout=log, stderr=log, env=self.env(), stdin=subprocess.DEVNULL)
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"devbox serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise TimeoutError("devbox serve did not become healthy:\n" + self.log())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def cgroup_parent_name(self) -> str:
        """"dx" + FNV-1a of the data dir: the service's parent cgroup, and with "-" its box name prefix."""
        h = 2166136261
        for b in os.path.abspath(self.data_dir).encode():
            h = ((h ^ b) * 16777619) & 0xFFFFFFFF
        return f"dx{h:08x}"

    def network_leftovers(self) -> dict:
        """The service's box links, nft table and range claim, if any are on the host."""
        tag = self.cgroup_parent_name()
        out = {}
        links = [l for l in os.listdir("/sys/class/net") if l.startswith(tag)]
        if links:
            out["links"] = links
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        if f"table inet {tag}" in tables.splitlines():
            out["table"] = tag
        marker = os.path.join(self.data_dir, "boxes", ".network")
        if os.path.exists(marker):
            cidr = open(marker).read().strip()
            routes = subprocess.run(["ip", "route", "show", "proto", "219"], capture_output=True, text=True).stdout
            if cidr in routes:
                out["claim"] = cidr
        return out

    def remove_network_leftovers(self) -> None:
        """After a serve that was killed and not restarted (a graceful stop removes its own):
        its links, nft table and range claim, so the machine is left as it was."""
        if self.proc and self.proc.poll() is None:
            return
        left = self.network_leftovers()
        for link in left.get("links", []):
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        if "table" in left:
            subprocess.run(["nft", "delete", "table", "inet", left["table"]], capture_output=True)
        if "claim" in left:
            subprocess.run(["ip", "route", "del", "unreachable", left["claim"], "proto", "219"], capture_output=True)

    def cgroup_parents(self) -> list[str]:
        """The service's parent cgroups, in every hierarchy."""
        name = self.cgroup_parent_name()
        return [p for p in (os.path.join("/sys/fs/cgroup", c, name) for c in os.listdir("/sys/fs/cgroup"))
                if os.path.isdir(p)]

    def box_name(self, devbox_id: str) -> str:
        """The crun container (and box directory) of a devbox: `<prefix><id>`, or for a box taken
        from the warm pool, the pooled box that `<data>/boxes/<prefix><id>` links to."""
        link = os.path.join(self.data_dir, "boxes", self.cgroup_parent_name() + "-" + devbox_id)
        return os.readlink(link) if os.path.islink(link) else os.path.basename(link)

    def service_leftovers(self) -> dict:
        """Everything of this service's on the host (containers, mounts, box dirs, cgroups)."""
        prefix = self.cgroup_parent_name() + "-"
        boxes = os.path.join(self.data_dir, "boxes")
        return {
            "containers": [c for c in crun_containers() if c.startswith(prefix)],
            "mounts": [l.split()[4] for l in open("/proc/self/mountinfo").read().splitlines()
                       if l.split()[4].startswith(boxes + "/")],
            "dirs": [d for d in (os.listdir(boxes) if os.path.isdir(boxes) else []) if d.startswith(prefix)],
            "cgroups": [os.path.join(p, c) for p in self.cgroup_parents() for c in os.listdir(p)
                        if os.path.isdir(os.path.join(p, c))],
        }

    def warm_pool(self) -> dict:
        return requests.get(self.base + "/healthz", timeout=10).json()["warm_pool"]

    def wait_pool_full(self, timeout: float = 60) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            p = self.warm_pool()
            if p["ready"] >= p["size"]:
                return p
            time.sleep(0.05)
        raise TimeoutError(f"warm pool not full: {self.warm_pool()}")

    def close(self) -> None:
        """Destroys every devbox, stops the service and removes a temporary data dir."""
        if self.proc and self.proc.poll() is None:
            self.delete_all()
            self.stop()
            # A service stopped with no box left removes its parent cgroups and its network.
            assert self.cgroup_parents() == [], f"cgroups left: {self.cgroup_parents()}"
            assert self.network_leftovers() == {}, f"network left: {self.network_leftovers()}"
        for p in self.cgroup_parents():  # after a kill -9: not the service's doing
            try:
                os.rmdir(p)
            except OSError:
                pass
        self.remove_network_leftovers()
        if self.tmp:
            mounted = [l.split()[4] for l in open("/proc/self/mountinfo").read().splitlines()
                       if l.split()[4].startswith(self.tmp + "/")]
            assert not mounted, f"mounts left under {self.tmp}: {mounted}"
            # Box disks: a device unbinds itself once its filesystem is unmounted (autoclear).
            deadline = time.time() + 5
            while loop_devices_under(self.tmp) and time.time() < deadline:
                time.sleep(0.05)
            assert not loop_devices_under(self.tmp), f"loop devices left: {loop_devices_under(self.tmp)}"
            subprocess.run(["rm", "-rf", self.tmp], check=False)

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- HTTP ----------------------------------------------------------------------
    def headers(self, extra: dict | None = None, token: str | None = None, bearer: str | None = None) -> dict:
        h = {"X-Provider-Token": token if token is not None else self.token}
        if bearer:
            h["Authorization"] = f"Bearer {bearer}"
        if extra:
            h.update(extra)
        return h

    def request(self, method: str, path: str, *, json_body=None, data=None, headers=None, token=None, bearer=None,
                timeout: float = 30) -> requests.Response:
        return requests.request(method, self.base + path, json=json_body, data=data,
                                headers=self.headers(headers, token=token, bearer=bearer), timeout=timeout)

    def create(self, body: dict, headers: dict | None = None, bearer: str | None = None) -> dict:
        r = self.request("POST", "/api/v1/devboxes", json_body=body, headers=headers, bearer=bearer)
        assert r.status_code == 202, r.text
        return r.json()

    def get(self, devbox_id: str, bearer: str | None = None) -> dict:
        r = self.request("GET", f"/api/v1/devboxes/{devbox_id}", bearer=bearer)
        assert r.status_code == 200, r.text
        return r.json()

    def operations(self, devbox_id: str) -> list[dict]:
        r = self.request("GET", f"/api/v1/devboxes/{devbox_id}/operations")
        assert r.status_code == 200, r.text
        return r.json()["operations"]

    def wait_state(self, devbox_id: str, states=("ready", "failed", "destroyed"), timeout: float = 120,
                   bearer: str | None = None) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            d = self.get(devbox_id, bearer=bearer)
            if d["state"] in states:
                return d
            time.sleep(0.05)
        raise TimeoutError(f"devbox {devbox_id} still {d['state']}: {json.dumps(self.operations(devbox_id))}")

    def delete_all(self) -> None:
        try:
            r = self.request("GET", "/api/v1/devboxes")
            for d in r.json().get("devboxes", []):
                if d["state"] != "destroyed":
                    self.request("DELETE", f"/api/v1/devboxes/{d['id']}")
        except Exception:
            pass

    def exec_in_box(self, devbox_id: str, command: str) -> subprocess.CompletedProcess:
        """Runs a command inside the box with crun directly (a test's own view, not the API)."""
        cid = self.container_id(devbox_id)
        return subprocess.run(["crun", "exec", "--cwd", "/workspace", cid, "/bin/sh", "-c", command],
                              capture_output=True, text=True, timeout=60)

    def container_id(self, devbox_id: str) -> str:
        name = self.box_name(devbox_id)
        assert name in crun_containers(), f"no container {name} for {devbox_id}"
        return name
