"""Every devbox on its own network: tests written as an attacker inside a box.

From inside a box (through the exec API) the test tries to reach what must be unreachable —
the service's own ports, other host listeners on every address, another box, a metadata-like
link-local address — and asserts each attempt is refused at once (a reset, not a timeout).
The "internet" is a namespace of the test's own (fake_net.FakeInternet, 198.51.100.0/24 routed
into it) and DNS upstream is a fake on 127.0.0.1: nothing leaves this machine.
"""
import json
import os
import socket
import subprocess
import threading
import time

import pytest
import requests

from devbox_harness import Server
from fake_net import FakeDNS, FakeInternet, build_query

# Runs inside the box: tries each target, prints [{target, result, ms}] as JSON.
PROBE = r"""
import json, socket, sys, time
out = []
for t in sys.argv[1:]:
    host, port = t.rsplit(":", 1)
    s = socket.socket(); s.settimeout(5)
    t0 = time.monotonic()
    try:
        s.connect((host, int(port))); r = "connected"
    except ConnectionRefusedError: r = "refused"
    except socket.timeout: r = "timeout"
    except OSError as e: r = "error:%d" % e.errno
    finally: s.close()
    out.append({"target": t, "result": r, "ms": round((time.monotonic() - t0) * 1000, 1)})
print(json.dumps(out))
"""

FETCH = r"""
import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
except Exception as e:
    print("ERROR %s" % e)
"""


def exec_box(server: Server, devbox_id: str, argv, timeout: int = 60) -> dict:
    r = server.request("POST", f"/api/v1/devboxes/{devbox_id}/exec",
                       json_body={"command": argv, "timeout_seconds": timeout}, timeout=timeout + 30)
    assert r.status_code == 200, r.text
    return r.json()


def probe(server: Server, devbox_id: str, *targets: str) -> dict[str, dict]:
    out = exec_box(server, devbox_id, ["python3", "-c", PROBE, *targets])
    assert out["exit_code"] == 0, out
    return {p["target"]: p for p in json.loads(out["stdout"])}


def fetch(server: Server, devbox_id: str, url: str) -> str:
    return exec_box(server, devbox_id, ["python3", "-c", FETCH, url])["stdout"].strip()


def resolve(server: Server, devbox_id: str, name: str) -> str:
    out = exec_box(server, devbox_id, ["sh", "-c", f"getent ahostsv4 {name} | head -1 | cut -d' ' -f1"])
    return out["stdout"].strip()


class Listener:
    """A TCP listener on the host that counts the connections it accepted."""

    def __init__(self, host: str):
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.addr = f"{host}:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                c, _ = self.sock.accept()
                self.accepted += 1
                c.close()
            except OSError:
                pass

    def close(self):
        self.running = False
        self.thread.join(timeout=2)
        self.sock.close()


def ready(server: Server, body: dict) -> dict:
    d = server.wait_state(server.create(body)["id"])
    assert d["state"] == "ready", d
    return d


def dyn_elements(server: Server) -> list[tuple[str, str]]:
    """(box address, admitted address) pairs in the serve's nft set of resolver admissions."""
    out = subprocess.run(["nft", "-j", "list", "set", "inet", server.cgroup_parent_name(), "dyn4"],
                         capture_output=True, text=True, check=True).stdout
    pairs = []
    for item in json.loads(out)["nftables"]:
        for e in item.get("set", {}).get("elem", []):
            val = e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e
            pairs.append(tuple(val["concat"]))
    return pairs


def gateway_of(server: Server, devbox_id: str) -> str:
    out = exec_box(server, devbox_id, ["sh", "-c", "awk '/^nameserver/{print $2}' /etc/resolv.conf"])
    return out["stdout"].strip()


@pytest.fixture
def internet():
    net = FakeInternet({"evil.test": "198.51.100.20"})
    yield net
    net.close()


@pytest.fixture
def dns():
    d = FakeDNS({"allowed.test": "198.51.100.10", "other.test": "198.51.100.20",
                 "api.allowed.test": "198.51.100.10"})
    yield d
    d.close()


@pytest.fixture
def net_server(fresh_server, internet, dns):
    s = fresh_server(env={"DEVBOX_DNS_UPSTREAM": f"127.0.0.1:{dns.port}", "DEVBOX_WARM_POOL": "1"}).start()
    s.wait_pool_full()
    return s


def test_box_reaches_nothing_of_the_host_nor_other_boxes(net_server, internet):
    s = net_server
    # A link-local "metadata" address on a link the test made, with a listener behind it.
    meta = "169.254.169.254"
    subprocess.run(["ip", "addr", "add", f"{meta}/32", "dev", internet.host_if], check=True)
    listeners = [Listener("127.0.0.1"), Listener(internet.host_addr), Listener(meta)]
    try:
        pooled = ready(s, {"name": "attacker"})          # taken from the warm pool
        cold = ready(s, {"name": "victim"})
        # The victim box listens on every address of its own.
        r = exec_box(s, cold["id"], ["sh", "-c", "nohup python3 -m http.server 8000 >/dev/null 2>&1 & sleep 0.5; echo up"])
        assert r["stdout"].strip() == "up"
        victim_addr = exec_box(s, cold["id"], ["hostname", "-I"])["stdout"].split()[0]
        gw = gateway_of(s, pooled["id"])
        targets = [
            f"127.0.0.1:{s.http_port}", f"127.0.0.1:{s.ssh_port}",       # the service, by loopback
            f"{gw}:{s.http_port}", f"{gw}:{s.ssh_port}", f"{gw}:22",      # ... and by the box's gateway
            *(l.addr for l in listeners),                                 # other host listeners
            f"{victim_addr}:8000",                                        # another box
            "10.0.0.1:80", "192.168.1.1:80", "172.16.0.1:80", "100.64.0.1:80",
            "192.0.2.1:80",                                               # the host's own link and gateway
            "224.0.0.1:80",
        ]
        results = probe(s, pooled["id"], *targets)
        for t in targets:
            # (The box's own stack has no route for TCP to multicast: ENETUNREACH, also at once.)
            assert results[t]["result"] in (("refused", "error:101") if t.startswith("224.") else ("refused",)), results[t]
            assert results[t]["ms"] < 1000, results[t]
        assert all(l.accepted == 0 for l in listeners)
        # Control: the same listeners answer the host, and the victim answers inside its own box.
        for l in listeners:
            host, port = l.addr.rsplit(":", 1)
            socket.create_connection((host, int(port)), timeout=2).close()
        own = probe(s, cold["id"], "127.0.0.1:8000")
        assert own["127.0.0.1:8000"]["result"] == "connected"
        # The box sees only its own interfaces.
        names = exec_box(s, pooled["id"], ["ls", "/sys/class/net"])["stdout"].split()
        assert sorted(names) == ["eth0", "lo"], names
        # No raw sockets; low ports are the box's own.
        raw = exec_box(s, pooled["id"], ["python3", "-c", "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)"])
        assert raw["exit_code"] != 0 and "Operation not permitted" in raw["stderr"]
        low = exec_box(s, pooled["id"], ["python3", "-c", "import socket; s=socket.socket(); s.bind(('0.0.0.0', 80)); print('bound')"])
        assert low["stdout"].strip() == "bound", low
    finally:
        for l in listeners:
            l.close()
        subprocess.run(["ip", "addr", "del", f"{meta}/32", "dev", internet.host_if], check=False)


def test_allow_all_reaches_the_internet_and_dns_goes_only_to_the_service(net_server, internet, dns):
    s = net_server
    d = ready(s, {"name": "open"})
    assert d["network"] == {"egress": "allow_all", "allow": [], "deny": []}
    assert resolve(s, d["id"], "other.test") == "198.51.100.20"
    assert "other.test" in dns.queries
    assert fetch(s, d["id"], "http://other.test/") == "hello from 198.51.100.20"
    assert fetch(s, d["id"], "http://198.51.100.10/") == "hello from 198.51.100.10"
    # A query sent to another DNS server is answered by the service's resolver all the same.
    ask = ("import socket, sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); "
           "s.sendto(bytes.fromhex(sys.argv[1]), ('198.51.100.53', 53)); m=s.recv(512); print(m[3] & 15, m[7])")
    out = exec_box(s, d["id"], ["python3", "-c", ask, build_query("evil.test").hex()])
    # NXDOMAIN from our resolver (the fake upstream does not know evil.test), not the
    # namespace's server (which would have answered it).
    assert out["stdout"].split() == ["3", "0"], out


def test_deny_all_with_an_allow_list_and_live_changes(net_server, dns):
    s = net_server
    d = ready(s, {"name": "locked", "network": {"egress": "deny_all", "allow": ["allowed.test"]}})
    assert d["network"] == {"egress": "deny_all", "allow": ["allowed.test"], "deny": []}
    assert fetch(s, d["id"], "http://allowed.test/") == "hello from 198.51.100.10"
    assert resolve(s, d["id"], "other.test") == ""                    # NXDOMAIN
    assert "other.test" not in dns.queries                             # never asked upstream
    r = probe(s, d["id"], "198.51.100.20:80")["198.51.100.20:80"]      # its raw address
    assert r["result"] == "refused" and r["ms"] < 1000, r

    # The resolver admitted allowed.test's address for this box only, for the record's TTL.
    admitted = dyn_elements(s)
    assert len(admitted) == 1 and admitted[0][1] == "198.51.100.10", admitted

    # PATCH flips it live: new connections follow within a second.
    p = s.request("PATCH", f"/api/v1/devboxes/{d['id']}/network", json_body={"egress": "allow_all"})
    assert p.status_code == 200, p.text
    assert dyn_elements(s) == []            # leaving deny_all drops what was admitted
    assert p.json() == {"egress": "allow_all", "allow": [], "deny": []}
    assert fetch(s, d["id"], "http://198.51.100.20/") == "hello from 198.51.100.20"
    assert s.get(d["id"])["network"]["egress"] == "allow_all"

    # A deny-list: a CIDR and a wildcard name.
    p = s.request("PATCH", f"/api/v1/devboxes/{d['id']}/network",
                  json_body={"egress": "allow_all", "deny": ["198.51.100.20/32", "*.allowed.test"]})
    assert p.status_code == 200, p.text
    assert probe(s, d["id"], "198.51.100.20:80")["198.51.100.20:80"]["result"] == "refused"
    assert resolve(s, d["id"], "api.allowed.test") == ""
    assert fetch(s, d["id"], "http://allowed.test/") == "hello from 198.51.100.10"   # apex not matched
    g = s.request("GET", f"/api/v1/devboxes/{d['id']}/network")
    assert g.json() == {"egress": "allow_all", "allow": [], "deny": ["198.51.100.20/32", "*.allowed.test"]}

    # Back to deny_all without an allow-list: even the once-admitted address is refused.
    s.request("PATCH", f"/api/v1/devboxes/{d['id']}/network", json_body={"egress": "deny_all"})
    assert probe(s, d["id"], "198.51.100.10:80")["198.51.100.10:80"]["result"] == "refused"


@pytest.mark.parametrize("network,field", [
    ({"egress": "deny_some"}, "network.egress"),
    ({"allow": ["10.1.2.0/24"]}, "network.allow[0]"),
    ({"deny": ["example.org", "169.254.169.254"]}, "network.deny[1]"),
    ({"allow": ["fd00::/8"]}, "network.allow[0]"),
    ({"allow": ["a.*.example.org"]}, "network.allow[0]"),
    ({"allow": [f"h{i}.example.org" for i in range(65)]}, "network.allow"),
])
def test_bad_policies_are_422_naming_the_field(server, network, field):
    r = server.request("POST", "/api/v1/devboxes", json_body={"name": "bad", "network": network})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field, r.text
    assert not [d for d in server.request("GET", "/api/v1/devboxes").json()["devboxes"] if d["name"] == "bad"]


def test_other_users_network_is_404(server):
    other = server.create_token("net-other")
    d = server.create({"name": "mine"})
    for method, body in (("GET", None), ("PATCH", {"egress": "deny_all"})):
        r = server.request(method, f"/api/v1/devboxes/{d['id']}/network", json_body=body, token=other)
        assert r.status_code == 404, r.text
    server.request("DELETE", f"/api/v1/devboxes/{d['id']}")


def test_network_outlives_a_crash_and_leaves_nothing_behind(fresh_server, internet, dns):
    s = fresh_server(env={"DEVBOX_DNS_UPSTREAM": f"127.0.0.1:{dns.port}", "DEVBOX_WARM_POOL": "2"}).start()
    s.wait_pool_full()
    d = ready(s, {"name": "survivor", "network": {"egress": "deny_all", "allow": ["allowed.test"]}})
    listener = Listener("127.0.0.1")
    try:
        assert s.network_leftovers().get("table")
        s.proc.kill()
        s.proc.wait()
        # While no serve runs, the kernel keeps the box isolated.
        r = subprocess.run(["crun", "exec", s.box_name(d["id"]), "python3", "-c", PROBE, listener.addr,
                            "198.51.100.20:80"], capture_output=True, text=True, timeout=30)
        results = {p["target"]: p for p in json.loads(r.stdout)}
        assert all(p["result"] == "refused" for p in results.values()), results
        # The new serve adopts the box: its network, policy and isolation hold.
        s.start()
        s.wait_pool_full()
        after = probe(s, d["id"], listener.addr, f"127.0.0.1:{s.http_port}", "198.51.100.20:80")
        assert all(p["result"] == "refused" for p in after.values()), after
        assert fetch(s, d["id"], "http://allowed.test/") == "hello from 198.51.100.10"
        assert listener.accepted == 0
        # The pool of the killed serve was swept: only this serve's links remain.
        tag = s.cgroup_parent_name()
        links = [l for l in os.listdir("/sys/class/net") if l.startswith(tag)]
        assert len(links) == 3, links   # the survivor and a pool of two
    finally:
        listener.close()
    s.delete_all()
    s.stop()
    assert s.network_leftovers() == {}


def test_two_serves_get_their_own_ranges_and_tables(fresh_server):
    a = fresh_server(env={"DEVBOX_WARM_POOL": "0"}).start()
    b = fresh_server(env={"DEVBOX_WARM_POOL": "0"}).start()
    da, db = ready(a, {"name": "a"}), ready(b, {"name": "b"})
    ga, gb = gateway_of(a, da["id"]), gateway_of(b, db["id"])
    assert ga.split(".")[:2] != gb.split(".")[:2], (ga, gb)
    ranges = [open(os.path.join(x.data_dir, "boxes", ".network")).read().strip() for x in (a, b)]
    assert ranges[0] != ranges[1]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    for x in (a, b):
        assert f"table inet {x.cgroup_parent_name()}" in tables
    # A box of one serve cannot reach a box of the other either.
    exec_box(b, db["id"], ["sh", "-c", "nohup python3 -m http.server 8000 >/dev/null 2>&1 & sleep 0.5"])
    addr_b = exec_box(b, db["id"], ["hostname", "-I"])["stdout"].split()[0]
    assert probe(a, da["id"], f"{addr_b}:8000")[f"{addr_b}:8000"]["result"] == "refused"


def test_a_clash_with_a_host_route_is_refused_at_start(fresh_server):
    s = fresh_server(env={"DEVBOX_NETWORK_CIDR": "192.0.2.0/24"})
    s.start(wait=False)
    assert s.proc.wait(timeout=30) != 0
    assert "DEVBOX_NETWORK_CIDR 192.0.2.0/24 overlaps" in s.log()


def test_policies_are_refused_where_boxes_share_the_host_network(fresh_server):
    s = fresh_server(env={"DEVBOX_NETWORK": "host", "DEVBOX_WARM_POOL": "0"}).start()
    r = s.request("POST", "/api/v1/devboxes", json_body={"name": "h", "network": {"egress": "deny_all"}})
    assert r.status_code == 422 and r.json()["error"]["field"] == "network", r.text
    d = ready(s, {"name": "h"})
    assert d["network"]["egress"] == "allow_all"
    r = s.request("PATCH", f"/api/v1/devboxes/{d['id']}/network", json_body={"egress": "deny_all"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "network", r.text
    assert s.network_leftovers() == {}


SQUAT = r"""
import socket, sys, time
ports = [int(p) for p in sys.argv[1:]]
held = []
while True:
    for p in ports:
        for host in ("0.0.0.0", "127.0.0.1"):
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, p)); s.listen(1); held.append(s)
                open("/workspace/squat.log", "a").write(f"bound {host}:{p}\n")
            except OSError:
                s.close()
    time.sleep(0.01)
"""


def test_a_box_squatting_the_service_ports_cannot_take_them_across_a_restart(fresh_server):
    """Issue 21: a box that keeps trying to bind the service's HTTP and SSH ports while the
    service restarts gets only its own network's ports; the restarted serve binds the host's."""
    s = fresh_server(env={"DEVBOX_WARM_POOL": "0"}).start()
    d = ready(s, {"name": "squatter"})
    out = exec_box(s, d["id"], ["sh", "-c", f"nohup python3 -c '{SQUAT}' {s.http_port} {s.ssh_port} >/dev/null 2>&1 & echo started"])
    assert out["stdout"].strip() == "started"
    assert s.stop() == 0
    s.start()                                   # raises if the ports were taken
    assert requests.get(s.base + "/healthz", timeout=5).json()["status"] == "ok"
    with socket.create_connection(("127.0.0.1", s.ssh_port), timeout=5) as c:
        assert c.recv(64).startswith(b"SSH-2.0-")   # the gateway, not the box's listener
    log = exec_box(s, d["id"], ["cat", "/workspace/squat.log"])["stdout"]
    assert f"bound 0.0.0.0:{s.http_port}" in log and f"bound 0.0.0.0:{s.ssh_port}" in log   # inside its own netns
    assert s.get(d["id"])["state"] == "ready"
