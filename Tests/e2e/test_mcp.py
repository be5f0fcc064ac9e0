"""The MCP tool server (issue 7) driven by the official Python MCP SDK: over stdio (`devbox mcp`,
with a running `devbox serve` and without one) and over Streamable HTTP (`/mcp`), in the SDK's
default mode (newest revision, 2026-07-28) and its legacy mode (initialize handshake)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import anyio
import pytest
import requests
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from devbox_harness import BIN, DATA_DIRS, free_port
from secret_scan import data_dir_files, scan_files

ROOT = Path(__file__).resolve().parents[2]
TOOLS = sorted(p.stem for p in (ROOT / "tool-schemas").glob("*.json"))
MODES = {"default": "auto", "legacy": "legacy"}
MODERN, HANDSHAKE = "2026-07-28", "2025-11-25"


# -- clients -----------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def http_client(server, mode: str, headers: dict | None = None):
    h = {"X-Provider-Token": server.token, **(headers or {})}
    async with create_mcp_http_client(headers=h) as http:
        async with Client(streamable_http_client(server.base + "/mcp", http_client=http), mode=mode) as c:
            yield c


def mcp_env(extra: dict | None = None) -> dict:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
           "DEVBOX_LOG_LEVEL": "debug"}
    env.update(extra or {})
    return env


@contextlib.asynccontextmanager
async def stdio(data_dir: str, mode: str, env: dict | None = None, errlog=None):
    params = StdioServerParameters(command=BIN, args=["mcp", "--data-dir", data_dir], env=mcp_env(env))
    log = errlog or open(os.devnull, "w")
    try:
        async with Client(stdio_client(params, errlog=log), mode=mode, read_timeout_seconds=180) as c:
            yield c
    finally:
        if errlog is None:
            log.close()


def run(fn, *args):
    return anyio.run(fn, *args)


def keygen() -> tuple[str, str]:
    d = tempfile.mkdtemp()
    path = os.path.join(d, "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    return path, open(path + ".pub").read().strip()


def gateway_answers(port: int) -> bool:
    """True when an SSH server greets on the port (the gateway lands in its own change)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(2)
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def ssh_run(command: str, key: str, remote: str) -> subprocess.CompletedProcess:
    argv = shlex.split(command)
    assert argv[0] == "ssh"
    return subprocess.run(
        [argv[0], "-i", key, "-o", "BatchMode=yes", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
         *argv[1:], remote], capture_output=True, text=True, timeout=60)


def structured(result, tool: str) -> dict:
    assert not result.is_error, f"{tool} failed: {result.content}"
    assert result.structured_content is not None
    # The text block carries the same JSON.
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


# -- the whole flow -----------------------------------------------------------------------------

async def check_tools(c: Client):
    listed = {t.name: t for t in (await c.list_tools()).tools}
    assert sorted(listed) == TOOLS
    for name, tool in listed.items():
        snap = json.loads((ROOT / "tool-schemas" / f"{name}.json").read_text())
        dumped = tool.model_dump(by_alias=True, exclude_none=True)
        for key in ("title", "description", "inputSchema", "outputSchema", "annotations"):
            assert dumped.get(key) == snap[key], f"{name}.{key} differs from tool-schemas/{name}.json"
        assert tool.input_schema.get("additionalProperties") is False


async def flow(c: Client, expect_version: str, ssh_port: int, tag: str) -> dict:
    assert c.protocol_version == expect_version
    await check_tools(c)
    mark = f"mark-{tag}-{os.urandom(4).hex()}"
    r = await c.call_tool("create_devbox", {"name": f"mcp-{tag}", "env": {"MARK": mark},
                                            "setup_commands": ["echo setup says $MARK", "sleep 2", "uname -s"]})
    box = structured(r, "create_devbox")["devbox"]
    assert box["state"] in ("requested", "provisioning", "ready") and box["env_keys"] == ["MARK"]

    progress = []

    async def on_progress(p, total, message):
        progress.append((p, total, message))

    r = await c.call_tool("wait_for_ready", {"devbox_id": box["id"], "timeout_seconds": 120},
                          progress_callback=on_progress)
    ready = structured(r, "wait_for_ready")
    assert ready["devbox"]["state"] == "ready" and ready["failed_operation"] is None
    assert "run_command" in ready["next_step"]
    assert len(progress) >= 2, progress
    values = [p for p, _, _ in progress]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert progress[-1][1] == 12 and "ready" in progress[-1][2]

    ops = structured(await c.call_tool("list_operations", {"devbox_id": box["id"]}), "list_operations")["operations"]
    assert [o["name"] for o in ops] == ["provision", "inject_credentials", "clone_repositories",
                                        "run_setup_commands", "publish_access"]
    setup = ops[3]
    assert setup["status"] == "succeeded" and f"setup says {mark}" in setup["output_tail"] and "Linux" in setup["output_tail"]
    short = structured(await c.call_tool("list_operations", {"devbox_id": box["id"], "tail_bytes": 6}),
                       "list_operations")["operations"][3]
    assert short["output_tail"] == "Linux\n" and short["output_truncated"] is True

    key, pub = keygen()
    sk = structured(await c.call_tool("set_ssh_key", {"public_key": pub}), "set_ssh_key")["ssh_key"]
    assert sk["type"] == "ssh-ed25519" and sk["fingerprint"].startswith("SHA256:")
    session = structured(await c.call_tool("create_session", {"devbox_id": box["id"]}), "create_session")
    assert session["command"].startswith("ssh ") and session["ssh"]["port"] == ssh_port
    assert session["ssh"]["username"] == session["session_id"]
    if gateway_answers(ssh_port):
        out = ssh_run(session["command"], key, "cat /proc/1/cgroup >/dev/null; echo in-box $MARK")
        assert out.returncode == 0 and f"in-box {mark}" in out.stdout, out.stderr
    listed = structured(await c.call_tool("list_sessions", {"devbox_id": box["id"]}), "list_sessions")["sessions"]
    assert session["session_id"] in [s["session_id"] for s in listed]
    structured(await c.call_tool("revoke_session", {"devbox_id": box["id"], "session_id": session["session_id"]}),
               "revoke_session")
    repos = structured(await c.call_tool("list_repositories", {"devbox_id": box["id"]}), "list_repositories")
    assert repos == {"devbox_id": box["id"], "repositories": []}
    ids = [d["id"] for d in structured(await c.call_tool("list_devboxes", {}), "list_devboxes")["devboxes"]]
    assert box["id"] in ids

    gone = structured(await c.call_tool("delete_devbox", {"devbox_id": box["id"]}), "delete_devbox")
    assert gone == {"devbox_id": box["id"], "state": "destroyed"}
    after = structured(await c.call_tool("get_devbox", {"devbox_id": box["id"]}), "get_devbox")
    assert after["state"] == "destroyed"
    return box


@pytest.mark.parametrize("mode", MODES)
def test_http_flow(server, mode):
    async def go():
        async with http_client(server, MODES[mode]) as c:
            await flow(c, MODERN if mode == "default" else HANDSHAKE, server.ssh_port, f"http-{mode}")
    run(go)


@pytest.mark.parametrize("mode", MODES)
def test_stdio_flow_with_running_serve(server, mode):
    async def go():
        async with stdio(server.data_dir, MODES[mode]) as c:
            await flow(c, MODERN if mode == "default" else HANDSHAKE, server.ssh_port, f"stdio-{mode}")
    run(go)
    # The local token is private to the data dir's owner.
    assert os.stat(os.path.join(server.data_dir, "mcp-token")).st_mode & 0o777 == 0o600


@pytest.mark.parametrize("mode", MODES)
def test_stdio_flow_remote_server(server, mode, tmp_path):
    """`devbox mcp --server URL` drives a deployment through the SDK; no local data dir is touched."""
    async def go():
        params = StdioServerParameters(
            command=BIN, args=["mcp", "--server", server.base, "--data-dir", str(tmp_path / "unused")],
            env=mcp_env({"DEVBOX_PROVIDER_TOKEN": server.token}))
        with open(os.devnull, "w") as log:
            async with Client(stdio_client(params, errlog=log), mode=MODES[mode], read_timeout_seconds=180) as c:
                await flow(c, MODERN if mode == "default" else HANDSHAKE, server.ssh_port, f"remote-{mode}")
    run(go)
    assert not (tmp_path / "unused").exists()


def test_remote_server_errors_are_tool_errors(tmp_path):
    async def go():
        params = StdioServerParameters(command=BIN, args=["mcp", "--server", f"http://127.0.0.1:{free_port()}"],
                                       env=mcp_env({"DEVBOX_PROVIDER_TOKEN": "dbx_pt_x"}))
        with open(os.devnull, "w") as log:
            async with Client(stdio_client(params, errlog=log)) as c:
                r = await c.call_tool("list_devboxes", {})
                assert r.is_error and "cannot reach the devbox server" in r.content[0].text
    run(go)
    missing = subprocess.run([BIN, "mcp", "--server", "http://127.0.0.1:1"], capture_output=True, text=True,
                             env=mcp_env(), stdin=subprocess.DEVNULL, timeout=30)
    assert missing.returncode != 0 and "DEVBOX_PROVIDER_TOKEN" in missing.stderr and missing.stdout == ""


class LocalDir:
    """A data dir with no running serve: `devbox mcp` starts one; close() stops it."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="devbox-e2e-mcp-")
        self.data_dir = os.path.join(self.tmp, "data")
        DATA_DIRS.add(os.path.realpath(self.data_dir))
        self.http_port, self.ssh_port = free_port(), free_port()
        # Fixed ports keep parallel test runs on this machine from racing for 8080/2222.
        self.env = {"DEVBOX_HTTP_ADDR": f"127.0.0.1:{self.http_port}", "DEVBOX_SSH_ADDR": f"127.0.0.1:{self.ssh_port}"}

    def state(self) -> dict | None:
        try:
            return json.loads(Path(self.data_dir, "serve.json").read_text())
        except FileNotFoundError:
            return None

    def serve_pids(self) -> list[int]:
        pids = []
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    argv = (p / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if b"serve" in argv and self.data_dir.encode() in argv:
                    pids.append(int(p.name))
        return pids

    def close(self):
        st = self.state()
        token_file = Path(self.data_dir, "mcp-token")
        if st and token_file.exists():
            h = {"X-Provider-Token": token_file.read_text().strip()}
            with contextlib.suppress(Exception):
                for d in requests.get(st["http"] + "/api/v1/devboxes", headers=h, timeout=10).json()["devboxes"]:
                    if d["state"] != "destroyed":
                        requests.delete(st["http"] + f"/api/v1/devboxes/{d['id']}", headers=h, timeout=30)
        for pid in self.serve_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 30
        while self.serve_pids() and time.time() < deadline:
            time.sleep(0.1)
        for pid in self.serve_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", self.tmp], check=False)


@pytest.fixture
def local_dir():
    d = LocalDir()
    yield d
    d.close()


@pytest.mark.parametrize("mode", MODES)
def test_stdio_flow_starts_a_serve(local_dir, mode):
    async def go():
        async with stdio(local_dir.data_dir, MODES[mode], env=local_dir.env) as c:
            await flow(c, MODERN if mode == "default" else HANDSHAKE, local_dir.ssh_port, f"auto-{mode}")
    run(go)
    st = local_dir.state()
    assert st and st["http"] == f"http://127.0.0.1:{local_dir.http_port}"
    # The serve outlives the MCP process (its own session), logs to serve.log, and is the only one.
    assert local_dir.serve_pids() == [st["pid"]]
    assert os.getsid(st["pid"]) == st["pid"]
    assert "HTTP listening" in Path(local_dir.data_dir, "serve.log").read_text()
    # A second MCP process reuses it.
    async def again():
        async with stdio(local_dir.data_dir, "auto", env=local_dir.env) as c:
            r = await c.call_tool("list_devboxes", {})
            assert not r.is_error
    run(again)
    assert local_dir.serve_pids() == [st["pid"]]


def test_stdio_restarts_a_serve_that_went_away(local_dir):
    async def go():
        async with stdio(local_dir.data_dir, "auto", env=local_dir.env) as c:
            structured(await c.call_tool("list_devboxes", {}), "list_devboxes")
            first = local_dir.state()["pid"]
            os.kill(first, signal.SIGTERM)
            while local_dir.serve_pids():
                await anyio.sleep(0.1)
            await anyio.sleep(1.2)
            r = await c.call_tool("create_devbox", {"name": "again", "wait": True, "setup_commands": ["true"]})
            assert structured(r, "create_devbox")["devbox"]["state"] == "ready"
            second = local_dir.state()["pid"]
            assert second != first and local_dir.serve_pids() == [second]
    run(go)


def test_concurrent_mcp_processes_start_one_serve(local_dir):
    """Several `devbox mcp` on one data dir: one serve, every create provisioned exactly once."""
    results = {}

    async def worker(i):
        async with stdio(local_dir.data_dir, "auto", env=local_dir.env) as c:
            r = await c.call_tool("create_devbox", {"name": f"conc-{i}", "setup_commands": [f"echo job $((100 + {i}))"],
                                                    "wait": True, "wait_timeout_seconds": 120})
            results[i] = structured(r, "create_devbox")

    async def go():
        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(worker, i)
    run(go)
    st = local_dir.state()
    assert local_dir.serve_pids() == [st["pid"]]
    for i, r in results.items():
        assert r["devbox"]["state"] == "ready", r
    token = Path(local_dir.data_dir, "mcp-token").read_text().strip()
    h = {"X-Provider-Token": token}
    boxes = requests.get(st["http"] + "/api/v1/devboxes", headers=h, timeout=10).json()["devboxes"]
    assert sorted(d["name"] for d in boxes) == [f"conc-{i}" for i in range(4)]
    for d in boxes:
        ops = requests.get(st["http"] + f"/api/v1/devboxes/{d['id']}/operations", headers=h, timeout=10).json()
        setup = [o for o in ops["operations"] if o["name"] == "run_setup_commands"][0]
        # ran once, not twice (the log shows the command as typed, then its output)
        assert setup["output"].count(f"job {100 + int(d['name'][5:])}\n") == 1, setup


def test_session_command_connects_over_ssh(server):
    """The command create_session returns (through `devbox mcp`) logs in with the OpenSSH client."""
    if not gateway_answers(server.ssh_port):
        pytest.skip("the SSH gateway does not answer on this build (it lands separately)")

    async def go():
        async with stdio(server.data_dir, "auto") as c:
            r = await c.call_tool("create_devbox", {"name": "ssh", "wait": True, "setup_commands": ["echo hi > f"]})
            box = structured(r, "create_devbox")["devbox"]
            key, pub = keygen()
            structured(await c.call_tool("set_ssh_key", {"public_key": pub}), "set_ssh_key")
            session = structured(await c.call_tool("create_session", {"devbox_id": box["id"]}), "create_session")
            out = ssh_run(session["command"], key, "cat /workspace/f; pwd")
            assert out.returncode == 0 and out.stdout.split() == ["hi", "/workspace"], out.stderr
            structured(await c.call_tool("delete_devbox", {"devbox_id": box["id"]}), "delete_devbox")
    run(go)


# -- failures -------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_failed_setup_reports_step_error_and_tail(server, mode):
    async def go():
        async with http_client(server, MODES[mode]) as c:
            r = await c.call_tool("create_devbox", {"name": "broken", "setup_commands": ["echo about to fail; exit 3"],
                                                    "wait": True})
            assert r.is_error
            text = r.content[0].text
            assert "run_setup_commands failed" in text and "about to fail" in text and "list_operations" in text
            failed = r.structured_content["failed_operation"]
            assert failed["name"] == "run_setup_commands" and failed["status"] == "failed" and failed["error"]
            box = r.structured_content["devbox"]
            # wait_for_ready on the failed box says the same
            again = await c.call_tool("wait_for_ready", {"devbox_id": box["id"]})
            assert again.is_error and "about to fail" in again.content[0].text
            await c.call_tool("delete_devbox", {"devbox_id": box["id"]})
    run(go)


def test_work_failures_are_tool_errors(server):
    async def go():
        async with http_client(server, "auto") as c:
            r = await c.call_tool("get_devbox", {"devbox_id": "dbx_doesnotexist"})
            assert r.is_error and "list_devboxes" in r.content[0].text
            r = await c.call_tool("get_devbox", {})
            assert r.is_error and "'devbox_id' is required" in r.content[0].text
            r = await c.call_tool("create_devbox", {"name": "x", "plan": "gigantic"})
            assert r.is_error and "unknown plan" in r.content[0].text
            r = await c.call_tool("create_devbox", {"name": "x", "inject_claude_token": True})
            assert r.is_error and "X-Claude-Token" in r.content[0].text
            r = await c.call_tool("wait_for_ready", {"devbox_id": "dbx_x", "timeout_seconds": 99999})
            assert r.is_error and "at most 3600" in r.content[0].text
            r = await c.call_tool("create_session", {"devbox_id": "dbx_doesnotexist"})
            assert r.is_error
            r = await c.call_tool("list_github_repos", {})
            assert r.is_error and "GitHub" in r.content[0].text
    run(go)


def test_wait_for_ready_is_cancelled_with_the_request(server):
    async def go():
        async with http_client(server, "auto") as c:
            box = structured(await c.call_tool("create_devbox", {"name": "slow", "setup_commands": ["sleep 30"]}),
                             "create_devbox")["devbox"]
            t0 = time.time()
            with anyio.move_on_after(1.5):
                await c.call_tool("wait_for_ready", {"devbox_id": box["id"], "timeout_seconds": 60})
            assert time.time() - t0 < 5
            # the server is still fine and the devbox unaffected
            d = structured(await c.call_tool("get_devbox", {"devbox_id": box["id"]}), "get_devbox")
            assert d["state"] in ("requested", "provisioning")
            await c.call_tool("delete_devbox", {"devbox_id": box["id"]})
    run(go)


@pytest.mark.parametrize("mode", MODES)
def test_wait_for_ready_on_change_notifications_reports_each_step(server, mode):
    """Over /mcp the wait wakes on the service's change notifications (no polling): progress still
    rises with each state and step change, the running setup step included, and ends ready."""
    async def go():
        async with http_client(server, MODES[mode]) as c:
            box = structured(await c.call_tool("create_devbox", {"name": f"notified-{mode}",
                                                                 "setup_commands": ["sleep 2", "echo done"]}),
                             "create_devbox")["devbox"]
            progress = []

            async def on_progress(p, total, message):
                progress.append((p, total, message))

            r = await c.call_tool("wait_for_ready", {"devbox_id": box["id"], "timeout_seconds": 120},
                                  progress_callback=on_progress)
            ready = structured(r, "wait_for_ready")
            assert ready["devbox"]["state"] == "ready" and ready["devbox"]["ready_at"]
            values = [p for p, _, _ in progress]
            assert values == sorted(values) and len(set(values)) == len(values), progress
            assert all(total == 12 for _, total, _ in progress)
            # The 2 s setup step was seen running: woken by the operation's change, not only by the state.
            assert any("run_setup_commands running" in m for _, _, m in progress), progress
            assert values[-1] == 12 and "ready" in progress[-1][2]
            await c.call_tool("delete_devbox", {"devbox_id": box["id"]})
    run(go)


@pytest.mark.parametrize("mode", MODES)
def test_serve_shutdown_is_not_held_by_a_wait(fresh_server, mode):
    """SIGTERM ends open wait_for_ready streams at once instead of draining them for their timeout."""
    s = fresh_server().start()
    ended = {}

    async def go():
        async with http_client(s, MODES[mode]) as c:
            box = structured(await c.call_tool("create_devbox", {"name": "slow", "setup_commands": ["sleep 6"]}),
                             "create_devbox")["devbox"]

            async def stop():
                await anyio.sleep(1.5)
                ended["sigterm"] = time.time()
                s.proc.send_signal(signal.SIGTERM)

            async with anyio.create_task_group() as tg:
                tg.start_soon(stop)
                with contextlib.suppress(Exception):
                    await c.call_tool("wait_for_ready", {"devbox_id": box["id"], "timeout_seconds": 120})
                ended["wait"] = time.time()
    run(go)
    assert ended["wait"] - ended["sigterm"] < 3
    assert s.proc.wait(30) == 0
    s.start()  # so the fixture can destroy the devbox


# -- raw protocol errors ------------------------------------------------------------------------

def rpc_lines(proc, *messages) -> list[dict]:
    out = []
    for m in messages:
        proc.stdin.write((m if isinstance(m, str) else json.dumps(m)) + "\n")
        proc.stdin.flush()
        out.append(json.loads(proc.stdout.readline()))
    return out


def test_raw_stdio_errors(tmp_path):
    proc = subprocess.Popen([BIN, "mcp", "--data-dir", str(tmp_path / "data")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=mcp_env())
    try:
        meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
        parse, batch, invalid, unknown, unknown_tool, bad_args, discover = rpc_lines(
            proc, "{not json", [{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}],
            {"jsonrpc": "2.0", "id": 2},
            {"jsonrpc": "2.0", "id": 3, "method": "resources/list", "params": {"_meta": meta}},
            {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"_meta": meta, "name": "nope"}},
            {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"_meta": meta, "name": "get_devbox",
                                                                           "arguments": ["x"]}},
            {"jsonrpc": "2.0", "id": "d", "method": "server/discover", "params": {"_meta": meta}})
        assert parse["id"] is None and parse["error"]["code"] == -32700
        assert batch["id"] is None and batch["error"]["code"] == -32600
        assert invalid["error"]["code"] == -32600
        assert unknown["id"] == 3 and unknown["error"]["code"] == -32601
        assert unknown_tool["error"]["code"] == -32602 and "nope" in unknown_tool["error"]["message"]
        assert bad_args["error"]["code"] == -32602
        assert discover["id"] == "d" and MODERN in discover["result"]["supportedVersions"]
        assert "wait_for_ready" in discover["result"]["instructions"]
        # tools/list needs no running service
        (tools,) = rpc_lines(proc, {"jsonrpc": "2.0", "id": 6, "method": "tools/list", "params": {"_meta": meta}})
        assert sorted(t["name"] for t in tools["result"]["tools"]) == TOOLS
        assert not (tmp_path / "data" / "serve.json").exists()
    finally:
        proc.stdin.close()
        assert proc.wait(10) == 0


def test_raw_http_errors(server):
    url = server.base + "/mcp"
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}

    def post(body, headers=None, token=True):
        h = {**accept, **(headers or {})}
        if token:
            h["X-Provider-Token"] = server.token
        return requests.post(url, data=body if isinstance(body, str) else json.dumps(body), headers=h, timeout=30)

    modern = {"MCP-Protocol-Version": MODERN}
    r = post({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}}, token=False)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = post({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}}, token=False,
             headers={"X-Provider-Token": "dbx_pt_wrong"})
    assert r.status_code == 401
    r = post("{oops", headers=modern)
    assert r.status_code == 400 and r.json()["error"]["code"] == -32700 and r.json()["id"] is None
    r = post({"jsonrpc": "2.0", "id": 2, "method": "nope", "params": {"_meta": meta}},
             headers={**modern, "Mcp-Method": "nope"})
    assert r.status_code == 404 and r.json()["error"]["code"] == -32601
    r = post({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"_meta": meta, "name": "nope"}},
             headers={**modern, "Mcp-Method": "tools/call", "Mcp-Name": "nope"})
    assert r.json()["error"]["code"] == -32602
    r = post({"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {"_meta": meta}},
             headers={**modern, "Mcp-Method": "tools/call"})
    assert r.status_code == 400 and r.json()["error"]["code"] == -32020
    r = post({"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": {"_meta": meta}},
             headers={"Accept": "application/json"})
    assert r.status_code == 406
    r = post({"jsonrpc": "2.0", "id": 6, "method": "tools/list"}, headers={"MCP-Protocol-Version": HANDSHAKE})
    assert r.status_code == 400  # no session
    r = requests.get(url, headers={"X-Provider-Token": server.token, "Accept": "text/event-stream"}, timeout=10)
    assert r.status_code == 405
    r = post("x" * (3 << 20), headers=modern)
    assert r.status_code == 413
    r = post({"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {"_meta": meta}},
             headers={**modern, "Mcp-Method": "tools/list", "Origin": "https://evil.example"})
    assert r.status_code == 403
    # a handshake session is bound to the token that opened it
    init = post({"jsonrpc": "2.0", "id": 8, "method": "initialize",
                 "params": {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})
    sid = init.headers["Mcp-Session-Id"]
    other = server.create_token("other-provider")
    deadline = time.time() + 10
    while True:  # a new token reaches the server's token cache within ~2 s
        r = post({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}, token=False,
                 headers={"X-Provider-Token": other, "Mcp-Session-Id": sid, "MCP-Protocol-Version": HANDSHAKE})
        if r.status_code != 401 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 404
    assert requests.delete(url, headers={"X-Provider-Token": server.token, "Mcp-Session-Id": sid}, timeout=10).status_code == 200
    # /mcp is in the API document
    assert "/mcp" in requests.get(server.base + "/openapi.json", timeout=10).json()["paths"]


# -- secrets --------------------------------------------------------------------------------------

def test_ai_token_reaches_the_box_but_no_result_or_log(fresh_server, tmp_path):
    s = fresh_server().start()
    claude = "sk-ant-mcp-" + os.urandom(24).hex()
    codex = "sk-codex-mcp-" + os.urandom(24).hex()
    errlog_path = tmp_path / "mcp-stderr.log"
    seen: list[str] = []

    async def go():
        with open(errlog_path, "w") as errlog:
            async with stdio(s.data_dir, "auto", env={"ANTHROPIC_API_KEY": claude}, errlog=errlog) as c:
                r = await c.call_tool("create_devbox", {
                    "name": "secret", "inject_claude_token": True, "wait": True,
                    "setup_commands": ["printf %s \"$ANTHROPIC_API_KEY\" | sha256sum | cut -d' ' -f1"]})
                seen.append(r.model_dump_json(by_alias=True))
                box = structured(r, "create_devbox")["devbox"]
                assert box["credential_profile"]["inject_claude_token"] is True
                for tool, args in [("list_operations", {"devbox_id": box["id"]}), ("get_devbox", {"devbox_id": box["id"]}),
                                   ("list_devboxes", {})]:
                    r = await c.call_tool(tool, args)
                    seen.append(r.model_dump_json(by_alias=True))
                ops = json.loads(seen[1])["structuredContent"]["operations"]
                assert hashlib.sha256(claude.encode()).hexdigest() in ops[3]["output_tail"]
                # the server holds no Codex token: asking for it fails and names where it comes from
                r = await c.call_tool("create_devbox", {"name": "nocodex", "inject_codex_token": True})
                assert r.is_error and "OPENAI_API_KEY" in r.content[0].text
        # over HTTP the token comes from the request's header
        async with http_client(s, "legacy", headers={"X-Codex-Token": codex}) as c:
            r = await c.call_tool("create_devbox", {
                "name": "secret-http", "inject_codex_token": True, "wait": True,
                "setup_commands": ["printf %s \"$OPENAI_API_KEY\" | sha256sum | cut -d' ' -f1"]})
            seen.append(r.model_dump_json(by_alias=True))
            box = structured(r, "create_devbox")["devbox"]
            r = await c.call_tool("list_operations", {"devbox_id": box["id"]})
            seen.append(r.model_dump_json(by_alias=True))
            assert hashlib.sha256(codex.encode()).hexdigest() in r.structured_content["operations"][3]["output_tail"]
    run(go)
    everything = "\n".join(seen)
    assert claude not in everything and codex not in everything
    key = open(os.path.join(s.data_dir, "encryption.key"), "rb").read().strip()
    for secret in (claude, codex):
        found = scan_files(data_dir_files(s.data_dir) + [s.log_path, str(errlog_path)], secret.encode(), [key])
        assert not found, f"secret found: {found}"
    assert errlog_path.stat().st_size > 0  # debug logging was on

    # Even a setup command that prints the token does not get it into a tool result.
    async def leak():
        with open(os.devnull, "w") as errlog:
            async with stdio(s.data_dir, "auto", env={"ANTHROPIC_API_KEY": claude}, errlog=errlog) as c:
                r = await c.call_tool("create_devbox", {"name": "leaky", "inject_claude_token": True, "wait": True,
                                                        "setup_commands": ["echo \"key=$ANTHROPIC_API_KEY\""]})
                box = structured(r, "create_devbox")["devbox"]
                r = await c.call_tool("list_operations", {"devbox_id": box["id"]})
                assert claude not in r.model_dump_json(by_alias=True)
                assert "key=[redacted]" in r.structured_content["operations"][3]["output_tail"]
    run(leak)
