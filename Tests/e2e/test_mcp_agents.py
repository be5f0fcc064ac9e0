"""The MCP server as an agent meets it (issue 22), driven by the official Python MCP SDK:
a lean tool list, paging through devboxes, cancellation that kills, live output, a stdio
server that dies with its client, quick waits and guidance in results."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from devbox_harness import BIN
from test_mcp import MODES, mcp_env, run, stdio, structured


@contextlib.asynccontextmanager
async def http(server, mode: str = "auto"):
    async with create_mcp_http_client(headers={"X-Provider-Token": server.token}) as h:
        async with Client(streamable_http_client(server.base + "/mcp", http_client=h), mode=mode) as c:
            yield c


# -- list_devboxes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_list_devboxes_pages_live_boxes_as_compact_items(fresh_server, mode):
    """Live boxes by default, a state filter, and a cursor that neither repeats nor skips a box
    when one is created between pages."""
    server = fresh_server().start()

    async def go():
        async with http(server, MODES[mode]) as c:
            ids = []
            for i in range(5):
                box = structured(await c.call_tool("create_devbox", {"name": f"list-{i}"}), "create_devbox")["devbox"]
                ids.append(box["id"])
            for gone in ids[:2]:
                structured(await c.call_tool("delete_devbox", {"devbox_id": gone}), "delete_devbox")

            async def page(args):
                return structured(await c.call_tool("list_devboxes", args), "list_devboxes")

            live = await page({})
            assert [d["id"] for d in live["devboxes"]] == ids[:1:-1]  # newest first, destroyed left out
            assert live["next_cursor"] is None
            for d in live["devboxes"]:
                assert set(d) == {"id", "name", "state", "created_at", "plan"}, d
                assert d["state"] != "destroyed"
            assert sorted(d["id"] for d in (await page({"state": "destroyed"}))["devboxes"]) == sorted(ids[:2])
            assert len((await page({"state": "all"}))["devboxes"]) == 5

            first = await page({"limit": 2})
            assert [d["id"] for d in first["devboxes"]] == [ids[4], ids[3]] and first["next_cursor"]
            # A box created between pages is newer than the cursor: the next page goes on where
            # the first one ended.
            structured(await c.call_tool("create_devbox", {"name": "list-late"}), "create_devbox")
            rest = await page({"limit": 2, "cursor": first["next_cursor"]})
            assert [d["id"] for d in rest["devboxes"]] == [ids[2]] and rest["next_cursor"] is None

            bad = await c.call_tool("list_devboxes", {"cursor": "garbage"})
            assert bad.is_error and "next_cursor" in bad.content[0].text
    run(go)


# -- cancellation kills the command ----------------------------------------------------------------

@contextlib.asynccontextmanager
async def client(server, transport: str, mode: str, tmp_path):
    """An SDK client of `server` over `transport`: http (/mcp), stdio (`devbox mcp` on the
    serve's data dir) or remote (`devbox mcp --server`)."""
    if transport == "http":
        async with http(server, mode) as c:
            yield c
    elif transport == "stdio":
        async with stdio(server.data_dir, mode) as c:
            yield c
    else:
        params = StdioServerParameters(
            command=BIN, args=["mcp", "--server", server.base, "--data-dir", str(tmp_path / "unused")],
            env=mcp_env({"DEVBOX_PROVIDER_TOKEN": server.token}))
        with open(os.devnull, "w") as log:
            async with Client(stdio_client(params, errlog=log), mode=mode, read_timeout_seconds=180) as c:
                yield c


async def ready_box(c, name: str) -> str:
    box = structured(await c.call_tool("create_devbox", {"name": name, "wait": True}), "create_devbox")["devbox"]
    assert box["state"] == "ready", box
    return box["id"]


TRANSPORTS = ["http", "stdio", "remote"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancelled_run_command_is_killed(server, transport, mode, tmp_path):
    """Cancelling run_command kills the command on every transport: the marker it would write
    after a sleep never appears (stdio: notifications/cancelled; HTTP: that, or in 2026-07-28
    the client closing its stream)."""
    async def go():
        async with client(server, transport, MODES[mode], tmp_path) as c:
            box = await ready_box(c, f"cancel-{transport}-{mode}")
            t0 = time.monotonic()
            with anyio.move_on_after(1.0):
                await c.call_tool("run_command", {"devbox_id": box, "command": "sleep 3; touch /workspace/marker"})
            assert time.monotonic() - t0 < 2.5
            await anyio.sleep(4)
            r = structured(await c.call_tool("run_command", {"devbox_id": box, "command": "ls /workspace"}), "run_command")
            assert "marker" not in r["stdout"], "the cancelled command ran on"
            await c.call_tool("delete_devbox", {"devbox_id": box})
    run(go)


# -- live output -----------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_run_command_progress_arrives_while_it_runs(server, transport, tmp_path):
    """Output is sent as progress within ~100 ms of arriving, not held until the next chunk:
    "start" arrives long before the command (and its "end") finishes."""
    async def go():
        async with client(server, transport, "auto", tmp_path) as c:
            box = await ready_box(c, f"progress-{transport}")
            seen = []
            t0 = time.monotonic()

            async def on_progress(p, total, message):
                seen.append((time.monotonic() - t0, message or ""))

            r = await c.call_tool("run_command", {"devbox_id": box, "command": "echo start; sleep 4; echo end"},
                                  progress_callback=on_progress)
            done = time.monotonic() - t0
            out = structured(r, "run_command")
            assert out["stdout"] == "start\nend\n"
            first = next((t for t, m in seen if "start" in m), None)
            assert first is not None, seen
            assert first < done - 3, f"'start' came {first:.2f}s in, the call ended at {done:.2f}s: {seen}"
            assert all("end" not in m for t, m in seen if t < done - 1), seen
            await c.call_tool("delete_devbox", {"devbox_id": box})
    run(go)


# -- devbox mcp dies with its client ---------------------------------------------------------------

CLIENT = r'''
import os, sys, anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

async def main():
    bin_, args, env, marker = sys.argv[1], sys.argv[2].split("\x1f"), dict(os.environ), sys.argv[3]
    params = StdioServerParameters(command=bin_, args=args, env=env)
    async with Client(stdio_client(params), mode="auto", read_timeout_seconds=180) as c:
        r = await c.call_tool("create_devbox", {"name": "orphan", "wait": True})
        box = r.structured_content["devbox"]["id"]
        print("box", box, flush=True)
        print("calling", flush=True)
        await c.call_tool("run_command", {"devbox_id": box, "command": f"sleep 6; touch {marker}"})

anyio.run(main)
'''


def children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("transport", ["stdio", "remote"])
def test_devbox_mcp_exits_when_its_client_is_killed_mid_call(server, transport, tmp_path):
    """SIGKILL the agent while run_command runs: `devbox mcp` sees stdin close, cancels the call
    (the command is killed: its marker never appears) and is gone within 5 s."""
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    if transport == "stdio":
        args, env = ["mcp", "--data-dir", server.data_dir], mcp_env()
    else:
        args = ["mcp", "--server", server.base, "--data-dir", str(tmp_path / "unused")]
        env = mcp_env({"DEVBOX_PROVIDER_TOKEN": server.token})
    proc = subprocess.Popen([sys.executable, str(script), BIN, "\x1f".join(args), "/workspace/orphan-marker"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        box = None
        for line in proc.stdout:
            if line.startswith("box "):
                box = line.split()[1]
            if line.startswith("calling"):
                break
        assert box, "the client did not get a box"
        time.sleep(1.0)
        mcp = [p for p in children(proc.pid) if alive(p)]
        assert len(mcp) == 1, mcp
        proc.kill()
        proc.wait()
        t0 = time.monotonic()
        while alive(mcp[0]) and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        gone = time.monotonic() - t0
        assert not alive(mcp[0]), "devbox mcp outlived its client by 10 s"
        assert gone < 5, f"devbox mcp took {gone:.1f}s to exit"
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(7)

    async def check():
        async with client(server, "http", "auto", tmp_path) as c:
            r = structured(await c.call_tool("run_command", {"devbox_id": box, "command": "ls /workspace"}), "run_command")
            assert "orphan-marker" not in r["stdout"], "the command of the killed client ran on"
            await c.call_tool("delete_devbox", {"devbox_id": box})
    run(check)


# -- waits over stdio are as quick as over HTTP ----------------------------------------------------

@pytest.mark.parametrize("transport", ["stdio", "remote"])
def test_wait_for_ready_over_stdio_returns_as_the_box_becomes_ready(server, transport, tmp_path):
    """wait_for_ready over stdio wakes on the serve's long-poll (`GET …/wait`), not at its next
    poll (every 250 ms in data-dir mode, every 1 s with --server): each of four waits returns
    within 150 ms of the box's ready_at."""
    from datetime import datetime

    async def go():
        async with client(server, transport, "auto", tmp_path) as c:
            lags = []
            for i in range(4):
                box = structured(await c.call_tool("create_devbox", {"name": f"quick-{i}", "setup_commands": ["sleep 1"]}),
                                 "create_devbox")["devbox"]
                progress = []

                async def on_progress(p, total, message):
                    progress.append(p)

                r = await c.call_tool("wait_for_ready", {"devbox_id": box["id"]}, progress_callback=on_progress)
                now = time.time()
                ready = structured(r, "wait_for_ready")["devbox"]
                assert ready["state"] == "ready"
                lags.append(now - datetime.fromisoformat(ready["ready_at"].replace("Z", "+00:00")).timestamp())
                assert len(progress) >= 2, progress  # the steps are still reported on the way
                await c.call_tool("delete_devbox", {"devbox_id": box["id"]})
            assert max(lags) < 0.15, f"wait_for_ready returned {[round(x, 3) for x in lags]} s after ready_at"
    run(go)


# -- guidance in results ---------------------------------------------------------------------------

def test_results_guide_an_agent_with_tools(server, tmp_path):
    """Next steps and errors name tools an agent can call (never REST routes), a timed-out wait
    is a result with timed_out, a destroyed box points at create_devbox, a missing file is named."""
    async def go():
        async with client(server, "stdio", "auto", tmp_path) as c:
            slow = structured(await c.call_tool("create_devbox", {"name": "slow", "setup_commands": ["sleep 30"]}),
                              "create_devbox")["devbox"]
            r = await c.call_tool("wait_for_ready", {"devbox_id": slow["id"], "timeout_seconds": 1})
            waited = structured(r, "wait_for_ready")  # not an error
            assert waited["timed_out"] is True and "wait_for_ready" in waited["next_step"], waited
            await c.call_tool("delete_devbox", {"devbox_id": slow["id"]})

            r = await c.call_tool("create_devbox", {"name": "guided", "wait": True})
            done = structured(r, "create_devbox")
            box, step = done["devbox"]["id"], done["next_step"]
            assert done["timed_out"] is False
            assert "run_command" in step and "read_file" in step
            assert step.index("run_command") < step.index("create_session"), step

            def text(result) -> str:
                assert result.is_error
                t = result.content[0].text
                assert "/api/v1" not in t, t
                return t

            assert "set_ssh_key" in text(await c.call_tool("create_session", {"devbox_id": box}))
            missing = text(await c.call_tool("read_file", {"devbox_id": box, "path": "/workspace/nope.txt"}))
            assert "/workspace/nope.txt" in missing, missing
            gh = text(await c.call_tool("list_github_repos", {}))
            assert gh.count("not connected") <= 1, gh

            structured(await c.call_tool("stop_devbox", {"devbox_id": box}), "stop_devbox")
            assert "start_devbox" in text(await c.call_tool("run_command", {"devbox_id": box, "command": "true"}))
            structured(await c.call_tool("delete_devbox", {"devbox_id": box}), "delete_devbox")
            gone = text(await c.call_tool("run_command", {"devbox_id": box, "command": "true"}))
            assert "create a new devbox" in gone.lower() and "try again" not in gone, gone
    run(go)


# -- network tools (issue 17) ----------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_network_policy_and_port_url_tools(server, transport, tmp_path):
    """create_devbox takes an egress policy, set_network replaces it live, port_url gives a URL that
    answers with the app in the box (the same provider token)."""
    import requests

    async def go():
        async with client(server, transport, MODES["default"], tmp_path) as c:
            r = await c.call_tool("create_devbox", {"name": f"net-{transport}", "wait": True,
                                                     "network": {"egress": "deny_all", "allow": ["Example.ORG"]}})
            box = structured(r, "create_devbox")["devbox"]
            assert box["state"] == "ready" and box["network"] == {"egress": "deny_all", "allow": ["example.org"], "deny": []}
            bad = await c.call_tool("set_network", {"devbox_id": box["id"], "allow": ["10.0.0.0/8"]})
            assert bad.is_error and "network.allow[0]" in bad.content[0].text, bad
            ok = structured(await c.call_tool("set_network", {"devbox_id": box["id"], "egress": "allow_all",
                                                               "deny": ["198.51.100.0/24"]}), "set_network")
            assert ok["network"] == {"egress": "allow_all", "allow": [], "deny": ["198.51.100.0/24"]}
            assert server.get(box["id"])["network"] == ok["network"]
            await c.call_tool("run_command", {"devbox_id": box["id"], "command":
                "cd /workspace && echo hi-from-port > index.html && (nohup python3 -m http.server 8123 --bind 127.0.0.1 >/dev/null 2>&1 &) && sleep 0.5"})
            url = structured(await c.call_tool("port_url", {"devbox_id": box["id"], "port": 8123}), "port_url")["url"]
            assert url.endswith(f"/api/v1/devboxes/{box['id']}/ports/8123/"), url
            got = await anyio.to_thread.run_sync(
                lambda: requests.get(url + "index.html", headers={"X-Provider-Token": server.token}, timeout=10))
            assert got.status_code == 200 and got.text == "hi-from-port\n", got.text
            await c.call_tool("delete_devbox", {"devbox_id": box["id"]})
    run(go)
