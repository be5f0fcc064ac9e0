"""Issue 19, the AI-API broker: a proxy-mode box holds a placeholder, never the real key.

Fake Anthropic and OpenAI upstreams (real HTTP servers on 127.0.0.1) check the real key;
the service is pointed at them (DEVBOX_ANTHROPIC_UPSTREAM / DEVBOX_OPENAI_UPSTREAM). Every
request comes from inside a box through the exec API, as an agent's SDK would send it.
"""
import hashlib
import json
import os
import re
import socket
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from devbox_harness import Server
from secret_scan import data_dir_files, scan_files

SSE_PAUSE = 1.0


class FakeUpstream:
    """`kind` anthropic: x-api-key must be `key`; openai: Authorization: Bearer `key`.
    POST …/messages or …/chat/completions answers JSON with `usage`; a body with
    "stream": true answers server-sent events, three chunks SSE_PAUSE apart (the send time of
    each is kept in `sent`)."""

    def __init__(self, kind: str, key: str):
        self.kind, self.key = kind, key
        self.seen: list[dict] = []
        self.sent: list[float] = []
        self.big = 0  # bytes of a large streamed answer (the benchmark's), 0: none
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                presented = (self.headers.get("x-api-key") if fake.kind == "anthropic"
                             else (self.headers.get("authorization") or "").removeprefix("Bearer "))
                fake.seen.append({"path": self.path, "key": presented, "headers": dict(self.headers), "body": body})
                if presented != fake.key:
                    return self.reply(401, {"error": {"type": "authentication_error", "message": "invalid x-api-key"}})
                req = json.loads(body or b"{}")
                if req.get("stream"):
                    return self.stream()
                if fake.kind == "anthropic":
                    return self.reply(200, {"id": "msg_1", "type": "message", "content": [{"type": "text", "text": "hi"}],
                                            "usage": {"input_tokens": 10, "output_tokens": 5}})
                return self.reply(200, {"id": "chatcmpl-1", "choices": [{"message": {"content": "hi"}}],
                                        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})

            def reply(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def stream(self):
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                fake.sent = []
                events = [
                    {"type": "message_start", "message": {"usage": {"input_tokens": 11, "output_tokens": 1}}},
                    {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hel"}},
                    {"type": "message_delta", "usage": {"output_tokens": 7}},
                ]
                for i, e in enumerate(events):
                    if i:
                        time.sleep(SSE_PAUSE)
                    self.wfile.write(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode())
                    self.wfile.flush()
                    fake.sent.append(time.time())
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def secret(prefix: str) -> str:
    return prefix + os.urandom(24).hex()


def exec_box(s: Server, devbox_id: str, argv, timeout: int = 60) -> dict:
    r = s.request("POST", f"/api/v1/devboxes/{devbox_id}/exec",
                  json_body={"command": argv, "timeout_seconds": timeout}, timeout=timeout + 30)
    assert r.status_code == 200, r.text
    return r.json()


def sh(s: Server, devbox_id: str, script: str) -> str:
    out = exec_box(s, devbox_id, ["sh", "-c", script])
    assert out["exit_code"] == 0, out
    return out["stdout"]


def box_env(s: Server, devbox_id: str) -> dict:
    out = sh(s, devbox_id, "env")
    return dict(l.split("=", 1) for l in out.splitlines() if "=" in l)


# The request an Anthropic SDK sends: POST $ANTHROPIC_BASE_URL/v1/messages with x-api-key.
ANTHROPIC_CURL = ('curl -s -w "\\n%{http_code}" "$ANTHROPIC_BASE_URL/v1/messages" -H "x-api-key: KEY" '
                  '-H "anthropic-version: 2023-06-01" -H "content-type: application/json" '
                  '-d \'{"model": "claude-test", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}\'')
OPENAI_CURL = ('curl -s -w "\\n%{http_code}" "$OPENAI_BASE_URL/chat/completions" -H "Authorization: Bearer KEY" '
               '-H "content-type: application/json" -d \'{"model": "gpt-test", "messages": []}\'')


def call(s: Server, devbox_id: str, template: str, key: str = "$ANTHROPIC_API_KEY") -> tuple[int, str]:
    out = sh(s, devbox_id, template.replace("KEY", key)).rsplit("\n", 1)
    return int(out[1]), out[0]


# Reads the SSE answer in the box as it comes: prints [arrival time, bytes] per read.
STREAM_READER = r"""
import json, os, socket, sys, time, urllib.parse
u = urllib.parse.urlparse(os.environ["ANTHROPIC_BASE_URL"])
body = json.dumps({"model": "m", "max_tokens": 5, "stream": True, "messages": []}).encode()
s = socket.create_connection((u.hostname, u.port))
s.sendall(b"POST " + u.path.encode() + b"/v1/messages HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
          + b"x-api-key: " + os.environ["ANTHROPIC_API_KEY"].encode() + b"\r\ncontent-length: "
          + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
out = []
while True:
    b = s.recv(65536)
    if not b:
        break
    out.append([time.time(), b.decode(errors="replace")])
print(json.dumps(out))
"""


def upstreams():
    real_a, real_o = secret("sk-ant-real-"), secret("sk-openai-real-")
    return real_a, real_o, FakeUpstream("anthropic", real_a), FakeUpstream("openai", real_o)


def env_for(ant: FakeUpstream, oai: FakeUpstream, **more) -> dict:
    return {"DEVBOX_ANTHROPIC_UPSTREAM": ant.url, "DEVBOX_OPENAI_UPSTREAM": oai.url, **more}


def create_proxy(s: Server, name: str, claude: str | None, codex: str | None, mode: str | None = "proxy") -> dict:
    headers, profile = {}, {"inject_claude_token": claude is not None, "inject_codex_token": codex is not None}
    if claude:
        headers["X-Claude-Token"] = claude
    if codex:
        headers["X-Codex-Token"] = codex
    body = {"name": name, "credential_profile": profile}
    if mode:
        body["credential_mode"] = mode
    d = s.create(body, headers=headers)
    d = s.wait_state(d["id"])
    assert d["state"] == "ready", [(o["name"], o["status"], o["error"], o["output"][-300:]) for o in s.operations(d["id"])]
    return d


def test_box_uses_the_api_through_the_broker_and_never_holds_the_key(fresh_server):
    real_a, real_o, ant, oai = upstreams()
    real_b = secret("sk-ant-other-")
    try:
        s = fresh_server(env=env_for(ant, oai))
        s.token = s.create_token()
        other = s.create_token("broker-other")
        s.start()
        a = create_proxy(s, "agent", real_a, real_o)
        b = create_proxy(s, "other", real_b, None)
        assert a["credential_mode"] == "proxy" and a["credential_profile"]["inject_claude_token"]
        env = box_env(s, a["id"])
        assert env["ANTHROPIC_API_KEY"].startswith("devbox-proxy-") and env["ANTHROPIC_API_KEY"] == env["OPENAI_API_KEY"]
        m = re.fullmatch(r"http://([0-9.]+):(\d+)/anthropic", env["ANTHROPIC_BASE_URL"])
        assert m and env["OPENAI_BASE_URL"] == f"http://{m[1]}:{m[2]}/openai/v1", env
        gateway, port = m[1], int(m[2])

        # Anthropic JSON: the upstream saw the real key, the box got the answer.
        status, body = call(s, a["id"], ANTHROPIC_CURL)
        assert status == 200 and json.loads(body)["usage"]["input_tokens"] == 10, body
        assert ant.seen[-1]["key"] == real_a and ant.seen[-1]["path"] == "/v1/messages"
        assert ant.seen[-1]["headers"].get("anthropic-version") == "2023-06-01"
        # OpenAI: Bearer replaced.
        status, body = call(s, a["id"], OPENAI_CURL, "$OPENAI_API_KEY")
        assert status == 200 and json.loads(body)["usage"]["prompt_tokens"] == 3, body
        assert oai.seen[-1]["key"] == real_o and oai.seen[-1]["path"] == "/v1/chat/completions"

        # SSE arrives in pieces: the first event is in the box before the upstream sent the last.
        reads = json.loads(exec_box(s, a["id"], ["python3", "-c", STREAM_READER])["stdout"])
        text = "".join(r[1] for r in reads)
        assert "message_start" in text and "message_delta" in text and " 200 " in text.splitlines()[0], text
        first_event = next(t for t, chunk in reads if "message_start" in chunk)
        assert first_event < ant.sent[-1] - SSE_PAUSE, (reads, ant.sent)

        # Another box's placeholder through this box's address: refused, upstream never asked.
        seen = len(ant.seen)
        b_key = box_env(s, b["id"])["ANTHROPIC_API_KEY"]
        assert b_key != env["ANTHROPIC_API_KEY"]
        status, body = call(s, a["id"], ANTHROPIC_CURL, b_key)
        assert status == 403 and "another devbox" in body, body
        # A made-up placeholder, no key, the real key itself: refused.
        for key in (env["ANTHROPIC_API_KEY"][:-4] + "0000", "", real_a):
            status, _ = call(s, a["id"], ANTHROPIC_CURL, key)
            assert status == 401, key
        # No key for OpenAI in box b: 401 saying so.
        status, body = call(s, b["id"], OPENAI_CURL, "$OPENAI_API_KEY")
        assert status == 401 and "credentials" in body, body
        # From the host (not a box), on loopback and on the box's gateway address: refused.
        for host in ("127.0.0.1", gateway):
            r = requests.post(f"http://{host}:{port}/anthropic/v1/messages", timeout=10,
                              headers={"x-api-key": env["ANTHROPIC_API_KEY"]}, json={"model": "m", "messages": []})
            assert r.status_code == 403, (host, r.text)
        assert len(ant.seen) == seen

        # Usage: owner only.
        usage = s.request("GET", f"/api/v1/devboxes/{a['id']}/usage").json()
        assert usage["apis"]["anthropic"]["requests"] == 2 and usage["apis"]["anthropic"]["status_codes"] == {"200": 2}
        assert usage["apis"]["anthropic"]["input_tokens"] == 21 and usage["apis"]["anthropic"]["output_tokens"] == 12
        assert usage["apis"]["openai"] == {"requests": 1, "status_codes": {"200": 1}, "input_tokens": 3, "output_tokens": 4}
        assert usage["requests"] == 3
        assert s.request("GET", f"/api/v1/devboxes/{a['id']}/usage", token=other).status_code == 404
        assert s.request("GET", "/api/v1/devboxes/dbx_nope/usage").status_code == 404

        # The real key's bytes: nowhere in the box's files or its processes' environments...
        for key in (real_a, real_o):
            out = exec_box(s, a["id"], ["sh", "-c", f"grep -rlsF '{key}' /workspace /etc /root /tmp; "
                                        "for f in /proc/[0-9]*/environ; do cat $f; echo; done | grep -cF "
                                        f"'{key}'; echo procs=$(ls -d /proc/[0-9]* | wc -l)"])
            lines = out["stdout"].split()
            assert lines[0] == "0" and lines[-1].startswith("procs="), out
        # ...nor in any API answer or the service log.
        answers = json.dumps([s.request("GET", "/api/v1/devboxes").json(), s.operations(a["id"]), s.get(a["id"]), usage])
        log = s.log()
        for key in (real_a, real_o, real_b):
            assert key not in answers and key not in log
        # While the devbox exists its key is in the database, encrypted (the deliberate departure).
        with sqlite3.connect(os.path.join(s.data_dir, "devbox.sqlite")) as db:
            assert db.execute("SELECT count(*) FROM devbox_pending_secrets WHERE devbox_id = ?", (a["id"],)).fetchone()[0] == 2

        # Destroy: no trace of the keys in the database files (-wal, -shm) or the log.
        for d in (a, b):
            assert s.request("DELETE", f"/api/v1/devboxes/{d['id']}").status_code == 204
            s.wait_state(d["id"], states=("destroyed",))
        time.sleep(0.5)
        key = open(os.path.join(s.data_dir, "encryption.key"), "rb").read().strip()
        files = data_dir_files(s.data_dir) + [s.log_path]
        for sec in (real_a, real_o, real_b):
            assert not scan_files(files, sec.encode(), [key]), sec
        with sqlite3.connect(os.path.join(s.data_dir, "devbox.sqlite")) as db:
            assert db.execute("SELECT count(*) FROM devbox_pending_secrets").fetchone()[0] == 0
            assert db.execute("SELECT count(*) FROM devbox_broker").fetchone()[0] == 0
    finally:
        ant.close()
        oai.close()


def test_rotation_and_a_restart_keep_brokering(fresh_server):
    real_a, real_o, ant, oai = upstreams()
    try:
        s = fresh_server(env=env_for(ant, oai))
        s.token = s.create_token()
        other = s.create_token("rotate-other")
        s.start()
        a = create_proxy(s, "rotate", real_a, real_o)
        assert call(s, a["id"], ANTHROPIC_CURL)[0] == 200
        # Rotate the Anthropic key: the box changes nothing, the upstream sees the new key.
        new_a = secret("sk-ant-rotated-")
        ant.key = new_a
        r = s.request("PATCH", f"/api/v1/devboxes/{a['id']}/credentials", headers={"X-Claude-Token": new_a})
        assert r.status_code == 200 and r.json()["credential_mode"] == "proxy", r.text
        assert new_a not in r.text
        assert call(s, a["id"], ANTHROPIC_CURL)[0] == 200 and ant.seen[-1]["key"] == new_a
        # An empty value removes the OpenAI key: the broker answers 401, the upstream is not asked.
        seen = len(oai.seen)
        r = s.request("PATCH", f"/api/v1/devboxes/{a['id']}/credentials", headers={"X-Codex-Token": ""})
        assert r.status_code == 200 and r.json()["credential_profile"]["inject_codex_token"] is False, r.text
        assert call(s, a["id"], OPENAI_CURL, "$OPENAI_API_KEY")[0] == 401 and len(oai.seen) == seen
        # Refusals: no header, another user's devbox, an env-mode devbox.
        assert s.request("PATCH", f"/api/v1/devboxes/{a['id']}/credentials").status_code == 422
        assert s.request("PATCH", f"/api/v1/devboxes/{a['id']}/credentials", token=other,
                         headers={"X-Claude-Token": "x"}).status_code == 404
        e = create_proxy(s, "envmode", secret("sk-ant-env-"), None, mode="env")
        assert s.request("PATCH", f"/api/v1/devboxes/{e['id']}/credentials",
                         headers={"X-Claude-Token": "x"}).status_code == 409

        # A restart: same port, same placeholder, the rotated key still in use.
        base = box_env(s, a["id"])["ANTHROPIC_BASE_URL"]
        before = s.request("GET", f"/api/v1/devboxes/{a['id']}/usage").json()
        assert before["apis"]["anthropic"]["requests"] == 2 and before["apis"]["anthropic"]["input_tokens"] == 20, before
        s.stop()
        s2 = fresh_server(data_dir=s.data_dir, token=s.token, env=env_for(ant, oai))
        s2.log_path = s.log_path
        s2.start()
        # Usage survived the restart (kept in the database) and keeps counting.
        after = s2.request("GET", f"/api/v1/devboxes/{a['id']}/usage").json()
        assert after["apis"] == before["apis"], (before, after)
        assert box_env(s2, a["id"])["ANTHROPIC_BASE_URL"] == base
        assert call(s2, a["id"], ANTHROPIC_CURL)[0] == 200 and ant.seen[-1]["key"] == new_a
        usage = s2.request("GET", f"/api/v1/devboxes/{a['id']}/usage").json()["apis"]["anthropic"]
        assert usage["requests"] == 3 and usage["status_codes"] == {"200": 3} and usage["input_tokens"] == 30, usage
        # The dashboard's devbox page shows the same counts (real headless Chromium).
        from dashboard_browser import Browser
        b = Browser()
        try:
            b.get(s2.base + "/login")
            b.type("#provider_token", s2.token)
            b.submit("#sign-in")
            b.get(f"{s2.base}/devboxes/{a['id']}")
            row = '#usage-table [data-usage-api="anthropic"]'
            b.wait_text(row + " [data-usage-requests]", "3")
            assert b.find(row + " [data-usage-codes]").text == "200: 3"
            assert b.find(row + " [data-usage-input]").text == "30" and b.find(row + " [data-usage-output]").text == "15"
            assert b.find('#usage-table [data-usage-api="openai"] [data-usage-requests]').text == "0"
            assert "proxy" in b.find("#credential-mode").text
            assert new_a not in b.driver.page_source
        finally:
            b.close()
        for sec in (real_a, new_a, real_o):
            assert sec not in s2.log()
        s2.delete_all()
    finally:
        ant.close()
        oai.close()


def test_env_stays_the_default_and_the_switch_makes_proxy_the_default(fresh_server):
    real_a, real_o, ant, oai = upstreams()
    try:
        # Without credential_mode and without the switch: the seed's injection, unchanged.
        s = fresh_server(env=env_for(ant, oai)).start()
        d = create_proxy(s, "seed", real_a, None, mode=None)
        assert d["credential_mode"] == "env"
        env = box_env(s, d["id"])
        assert env["ANTHROPIC_API_KEY"] == real_a and "ANTHROPIC_BASE_URL" not in env
        r = s.request("POST", "/api/v1/devboxes", json_body={"name": "bad", "credential_mode": "vault"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "credential_mode", r.text
        s.delete_all()
        s.close()
        # DEVBOX_DEFAULT_CREDENTIAL_MODE=proxy: proxy without asking; env still on request.
        s = fresh_server(env=env_for(ant, oai, DEVBOX_DEFAULT_CREDENTIAL_MODE="proxy")).start()
        d = create_proxy(s, "switched", real_a, None, mode=None)
        assert d["credential_mode"] == "proxy"
        env = box_env(s, d["id"])
        assert env["ANTHROPIC_API_KEY"] != real_a and env["ANTHROPIC_BASE_URL"].endswith("/anthropic")
        assert call(s, d["id"], ANTHROPIC_CURL)[0] == 200 and ant.seen[-1]["key"] == real_a
        e = create_proxy(s, "asked-env", real_a, None, mode="env")
        assert e["credential_mode"] == "env" and box_env(s, e["id"])["ANTHROPIC_API_KEY"] == real_a
        s.delete_all()
    finally:
        ant.close()
        oai.close()


def test_cli_and_mcp_carry_the_credential_mode(fresh_server):
    import anyio
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    real_a, real_o, ant, oai = upstreams()
    try:
        s = fresh_server(env=env_for(ant, oai)).start()
        cli_env = {"DEVBOX_URL": s.base, "DEVBOX_PROVIDER_TOKEN": s.token, "ANTHROPIC_API_KEY": real_a}
        r = s.cli("create", "cli-proxy", "--claude", "--credential-mode", "proxy", "--wait", "--json", env=cli_env)
        d = json.loads(r.stdout)
        assert d["credential_mode"] == "proxy" and d["state"] == "ready", r.stdout
        assert real_a not in r.stdout + r.stderr
        assert call(s, d["id"], ANTHROPIC_CURL)[0] == 200 and ant.seen[-1]["key"] == real_a
        r = s.cli("create", "cli-bad", "--credential-mode", "vault", env=cli_env, check=False)
        assert r.returncode != 0 and "credential_mode" in r.stderr, r.stderr

        async def mcp():
            h = {"X-Provider-Token": s.token, "X-Claude-Token": real_a}
            async with create_mcp_http_client(headers=h) as http:
                async with Client(streamable_http_client(s.base + "/mcp", http_client=http)) as c:
                    res = await c.call_tool("create_devbox", {"name": "mcp-proxy", "inject_claude_token": True,
                                                              "credential_mode": "proxy", "wait": True})
                    assert not res.is_error, res.content
                    return res.structured_content["devbox"]
        box = anyio.run(mcp)
        assert box["credential_mode"] == "proxy" and box["state"] == "ready", box
        assert call(s, box["id"], ANTHROPIC_CURL)[0] == 200 and ant.seen[-1]["key"] == real_a
        s.delete_all()
    finally:
        ant.close()
        oai.close()


class FramingUpstream:
    """A fake Anthropic upstream for the broker's relay (http:// upstreams are spliced): answers
    in each HTTP/1.1 framing on kept-alive connections, and counts the connections it accepted.
    The body's JSON `mode` picks the answer: `chunked` (server-sent events in chunks, one of
    300 KiB, usage in the first and last event), `big` (JSON of 600 KiB with a content-length,
    usage at its end), `empty` (204), `small` (JSON with usage), `cut` (a chunked answer that
    stops inside a chunk and closes)."""

    BIG_TEXT = "b" * (600 << 10)

    def __init__(self, key: str):
        self.key = key
        self.connections = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def setup(self):
                super().setup()
                fake.connections += 1

            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                if self.headers.get("x-api-key") != fake.key:
                    return self.answer(401, b"{}", "application/json")
                mode = req.get("mode")
                if mode in ("chunked", "cut"):
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    for piece in FramingUpstream.events():
                        if mode == "cut" and len(piece) > 1000:
                            self.wfile.write(b"%x\r\n" % len(piece) + piece[:1000])
                            self.wfile.flush()
                            self.close_connection = True
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                elif mode == "big":
                    body = json.dumps({"content": [{"type": "text", "text": FramingUpstream.BIG_TEXT}],
                                       "usage": {"input_tokens": 100, "output_tokens": 200}}).encode()
                    self.answer(200, body, "application/json")
                elif mode == "empty":
                    self.send_response(204)
                    self.end_headers()
                else:
                    self.answer(200, json.dumps({"usage": {"input_tokens": 1, "output_tokens": 2}}).encode(),
                                "application/json")

            def answer(self, status, body, ctype):
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @staticmethod
    def events() -> list[bytes]:
        start = {"type": "message_start", "message": {"usage": {"input_tokens": 30, "output_tokens": 1}}}
        delta = {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "d" * (300 << 10)}}
        end = {"type": "message_delta", "usage": {"output_tokens": 40}}
        return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in (start, delta, end)]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# In the box: one kept-alive connection through the broker, an answer of each framing.
FRAMINGS_CLIENT = r"""
import hashlib, http.client, json, os, urllib.parse
u = urllib.parse.urlparse(os.environ["ANTHROPIC_BASE_URL"])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
h = {"x-api-key": os.environ["ANTHROPIC_API_KEY"], "content-type": "application/json"}
out = {}
for mode in ("small", "chunked", "big", "empty", "small", "chunked", "small"):
    c.request("POST", u.path + "/v1/messages", body=json.dumps({"mode": mode}), headers=h)
    r = c.getresponse()
    body = r.read()
    out.setdefault(mode, []).append([r.status, len(body), hashlib.sha256(body).hexdigest(),
                                     r.getheader("transfer-encoding"), r.getheader("content-length")])
c.close()
c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
c.request("POST", u.path + "/v1/messages", body=json.dumps({"mode": "cut"}), headers=h)
r = c.getresponse()
try:
    r.read()
    out["cut"] = "complete"
except http.client.IncompleteRead as e:
    out["cut"] = "incomplete"
print(json.dumps(out))
"""


def test_relay_framings_kept_alive_upstream_and_a_cut_stream(fresh_server):
    """The splice relay (http:// upstreams): a chunked event stream, a large answer with a length,
    204 and small answers arrive intact and in order on one box connection, usage is counted from
    each, the upstream's connections are kept alive, a stream the upstream cuts ends the box's
    answer incomplete (not a hang, not a complete-looking body), and an upstream nobody listens on
    is a 502 naming it."""
    real_a = secret("sk-ant-real-")
    up = FramingUpstream(real_a)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    try:
        s = fresh_server(env={"DEVBOX_ANTHROPIC_UPSTREAM": up.url,
                              "DEVBOX_OPENAI_UPSTREAM": f"http://127.0.0.1:{dead.getsockname()[1]}"}).start()
        d = create_proxy(s, "framings", real_a, real_a)
        got = json.loads(exec_box(s, d["id"], ["python3", "-c", FRAMINGS_CLIENT])["stdout"])
        sse = b"".join(FramingUpstream.events())
        big = json.dumps({"content": [{"type": "text", "text": FramingUpstream.BIG_TEXT}],
                          "usage": {"input_tokens": 100, "output_tokens": 200}}).encode()
        for status, length, digest, te, cl in got["chunked"]:
            assert (status, length, digest, te) == (200, len(sse), hashlib.sha256(sse).hexdigest(), "chunked"), got
        [[status, length, digest, te, cl]] = got["big"]
        assert (status, length, digest, cl) == (200, len(big), hashlib.sha256(big).hexdigest(), str(len(big))), got
        assert [g[:2] for g in got["empty"]] == [[204, 0]], got
        assert [g[0] for g in got["small"]] == [200, 200, 200], got
        assert got["cut"] == "incomplete", got
        # Usage: 3 small (1/2), 2 streams (30/40), the big answer (100/200); the cut stream's first event (30/1).
        usage = s.request("GET", f"/api/v1/devboxes/{d['id']}/usage").json()["apis"]["anthropic"]
        assert usage["requests"] == 8 and usage["status_codes"] == {"200": 7, "204": 1}, usage
        assert usage["input_tokens"] == 3 + 60 + 100 + 30 and usage["output_tokens"] == 6 + 80 + 200 + 1, usage
        # Seven requests on one box connection: the upstream saw them on one kept-alive connection
        # (plus the cut stream's).
        assert up.connections <= 3, up.connections
        # Nothing listens upstream: 502 naming the failure, counted.
        status, body = call(s, d["id"], OPENAI_CURL, "$OPENAI_API_KEY")
        assert status == 502 and "could not be reached" in body and "refused" in body.lower(), body
        assert real_a not in s.log()
        s.delete_all()
    finally:
        up.close()
        dead.close()
