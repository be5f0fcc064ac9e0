"""A fake DNS server and a fake "internet" for the network tests.

FakeDNS answers A queries from a table (NXDOMAIN otherwise) on 127.0.0.1 and counts what it
was asked. FakeInternet is a network namespace of the test's own, reached from the host
through a veth pair and a route for 198.51.100.0/24 (TEST-NET-2): its addresses serve HTTP
(and DNS on .53), so every packet stays on this machine. Both clean up after themselves.
"""
import os
import secrets
import socket
import struct
import subprocess
import threading
import time

INTERNET = "198.51.100.0/24"


def build_query(name: str, qtype: int = 1, qid: int | None = None) -> bytes:
    qid = secrets.randbelow(65536) if qid is None else qid
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack(">HH", qtype, 1)


def parse_question(msg: bytes) -> tuple[int, str, int, int]:
    qid, = struct.unpack(">H", msg[:2])
    i, labels = 12, []
    while msg[i]:
        labels.append(msg[i + 1:i + 1 + msg[i]].decode())
        i += 1 + msg[i]
    qtype, _ = struct.unpack(">HH", msg[i + 1:i + 5])
    return qid, ".".join(labels).lower(), qtype, i + 5


def answer(msg: bytes, table: dict[str, str], ttl: int = 60) -> bytes:
    qid, name, qtype, end = parse_question(msg)
    question = msg[12:end]
    addr = table.get(name)
    if addr is None:
        return struct.pack(">HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question  # NXDOMAIN
    if qtype != 1:
        return struct.pack(">HHHHHH", qid, 0x8180, 1, 0, 0, 0) + question  # no AAAA
    rr = struct.pack(">HHHIH", 0xC00C, 1, 1, ttl, 4) + socket.inet_aton(addr)
    return struct.pack(">HHHHHH", qid, 0x8180, 1, 1, 0, 0) + question + rr


class FakeDNS:
    def __init__(self, table: dict[str, str], host: str = "127.0.0.1", port: int = 0, netns: str | None = None):
        self.table = table
        self.queries: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.running:
            try:
                msg, peer = self.sock.recvfrom(4096)
            except (socket.timeout, OSError):
                continue
            try:
                self.queries.append(parse_question(msg)[1])
                self.sock.sendto(answer(msg, self.table), peer)
            except Exception:
                pass

    def close(self):
        self.running = False
        self.thread.join(timeout=2)
        self.sock.close()


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check)


class FakeInternet:
    """Namespace `dbxtnet<rand>`: 198.51.100.10 and .20 serve HTTP on port 80 (each answers
    with its own address), .53 answers DNS from `dns_table`. The host reaches it through
    veth `dbxtv<rand>` (198.18.<n>.1/30, a host address the tests also listen on)."""

    def __init__(self, dns_table: dict[str, str] | None = None):
        r = secrets.token_hex(3)
        self.ns = f"dbxtnet{r}"
        self.host_if = f"dbxtv{r}"
        self.peer_if = f"dbxtp{r}"
        n = secrets.randbelow(200) + 20
        self.host_addr = f"198.18.{n}.1"
        self.peer_addr = f"198.18.{n}.2"
        self.procs: list[subprocess.Popen] = []
        try:
            run("ip", "netns", "add", self.ns)
            run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if)
            run("ip", "link", "set", self.peer_if, "netns", self.ns)
            run("ip", "addr", "add", f"{self.host_addr}/30", "dev", self.host_if)
            run("ip", "link", "set", self.host_if, "up")
            ns = ["ip", "netns", "exec", self.ns]
            run(*ns, "ip", "addr", "add", f"{self.peer_addr}/30", "dev", self.peer_if)
            run(*ns, "ip", "link", "set", self.peer_if, "up")
            run(*ns, "ip", "link", "set", "lo", "up")
            for a in ("198.51.100.10", "198.51.100.20", "198.51.100.53"):
                run(*ns, "ip", "addr", "add", f"{a}/32", "dev", "lo")
            run(*ns, "ip", "route", "add", "default", "via", self.host_addr)
            # Only now may anything be sent to 198.51.100.0/24: it is routed into the namespace.
            run("ip", "route", "add", INTERNET, "via", self.peer_addr)
            server = (
                "import http.server, socketserver\n"
                "class H(http.server.BaseHTTPRequestHandler):\n"
                "    def do_GET(self):\n"
                "        b = ('hello from ' + self.server.server_address[0]).encode()\n"
                "        self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)\n"
                "    def log_message(self, *a): pass\n"
                "import sys, threading\n"
                "for a in sys.argv[1:]:\n"
                "    s = socketserver.ThreadingTCPServer((a, 80), H); threading.Thread(target=s.serve_forever, daemon=True).start()\n"
                "threading.Event().wait()\n")
            self.procs.append(subprocess.Popen([*ns, "python3", "-c", server, "198.51.100.10", "198.51.100.20"]))
            self.dns_table = dns_table or {}
            dns = (
                "import sys, json; sys.path.insert(0, sys.argv[1]); import fake_net\n"
                "d = fake_net.FakeDNS(json.loads(sys.argv[2]), host='198.51.100.53', port=53)\n"
                "import threading; threading.Event().wait()\n")
            import json
            self.procs.append(subprocess.Popen([*ns, "python3", "-c", dns, os.path.dirname(__file__),
                                                json.dumps(self.dns_table)]))
            deadline = time.time() + 10
            while time.time() < deadline:
                if run(*ns, "python3", "-c", "import socket; socket.create_connection(('198.51.100.10', 80), 1)",
                       check=False).returncode == 0:
                    break
                time.sleep(0.1)
        except Exception:
            self.close()
            raise

    def close(self):
        for p in self.procs:
            p.kill()
            p.wait()
        run("ip", "route", "del", INTERNET, check=False)
        run("ip", "link", "del", self.host_if, check=False)
        run("ip", "netns", "del", self.ns, check=False)
