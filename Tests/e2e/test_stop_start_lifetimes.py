"""Stop/start, idle timeouts and lifetimes on real boxes; MCP tools and CLI for issue #9."""
import json
import os
import shutil
import subprocess
import tempfile
import time

import anyio
import pytest

from devbox_harness import Server, containers_of, crun_containers


def err(r) -> dict:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    return body["error"]


def wait_for(predicate, timeout: float = 60, interval: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError("condition not met")


def ex(server, box, command, **body):
    r = server.request("POST", f"/api/v1/devboxes/{box}/exec", json_body={"command": command, **body})
    return r


def make_key():
    d = tempfile.mkdtemp(prefix="devbox-sshkey-")
    path = os.path.join(d, "id")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path, "-C", "e2e"], check=True)
    return d, path, open(path + ".pub").read().strip()


def ssh_argv(server, key, user, command):
    return ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes",
            "-o", "ConnectTimeout=10", "-i", key, "-p", str(server.ssh_port), f"{user}@127.0.0.1", command]


# -- stop / start ------------------------------------------------------------------------------------

def test_stop_keeps_files_and_env_ends_processes_start_reruns_nothing(server):
    b = server.create({"name": "stop-start", "env": {"MARK": "kept-env"},
                       "setup_commands": ["echo run >> /root/setup-runs"]})
    box = server.wait_state(b["id"])
    assert box["state"] == "ready", box
    bid = b["id"]
    assert ex(server, bid, "echo data > /workspace/keep; echo home > /root/keep; nohup sleep 600 >/dev/null 2>&1 &").status_code == 200
    cid = server.container_id(bid)

    r = server.request("POST", f"/api/v1/devboxes/{bid}/stop")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "stopped"
    # Processes and memory are gone: no container runs any more.
    assert cid not in crun_containers()
    # Wrong-state requests are 409 JSON errors.
    for method, path, body in [("POST", "stop", None), ("POST", "exec", {"command": "true"}),
                               ("GET", "files?path=/workspace/keep", None),
                               ("POST", "access/session", None)]:
        r = server.request(method, f"/api/v1/devboxes/{bid}/{path}", json_body=body)
        assert r.status_code == 409, (path, r.text)
        assert err(r)["code"] == "conflict"

    r = server.request("POST", f"/api/v1/devboxes/{bid}/start")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "ready"
    out = ex(server, bid, "cat /workspace/keep /root/keep /root/setup-runs; echo $MARK; pgrep -x sleep || echo no-sleep").json()
    assert out["stdout"] == "data\nhome\nrun\nkept-env\nno-sleep\n", out
    # Starting a ready devbox changes nothing; operations were not re-run.
    assert server.request("POST", f"/api/v1/devboxes/{bid}/start").json()["state"] == "ready"
    ops = server.operations(bid)
    assert all(o["status"] in ("succeeded", "skipped") for o in ops)
    # Stop then delete: destroyed from stopped.
    assert server.request("POST", f"/api/v1/devboxes/{bid}/stop").status_code == 200
    assert server.request("DELETE", f"/api/v1/devboxes/{bid}").status_code == 204
    assert server.get(bid)["state"] == "destroyed"
    r = server.request("POST", f"/api/v1/devboxes/{bid}/start")
    assert r.status_code == 409 and err(r)["code"] == "conflict"


def test_stop_closes_ssh_and_a_stopped_box_refuses_logins(server):
    d, key, pub = make_key()
    try:
        assert server.request("PUT", "/api/v1/users/me/ssh-key", json_body={"public_key": pub}).status_code == 204
        bid = server.wait_state(server.create({"name": "ssh-stop"})["id"])["id"]
        sid = server.request("POST", f"/api/v1/devboxes/{bid}/access/session").json()["session_id"]
        assert subprocess.run(ssh_argv(server, key, sid, "echo hi"), capture_output=True, timeout=60).stdout == b"hi\n"
        live = subprocess.Popen(ssh_argv(server, key, sid, "sleep 120"), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: server.request("GET", f"/api/v1/devboxes/{bid}/access/sessions").json()["sessions"][0]["connections"] == 1)
        assert server.request("POST", f"/api/v1/devboxes/{bid}/stop").status_code == 200
        assert live.wait(timeout=30) != 0
        out = subprocess.run(ssh_argv(server, key, sid, "echo hi"), capture_output=True, timeout=60)
        assert out.returncode == 255 and out.stdout == b""
        server.request("DELETE", f"/api/v1/devboxes/{bid}")
    finally:
        shutil.rmtree(d, ignore_errors=True)


# -- lifetimes ---------------------------------------------------------------------------------------

LIFETIME_ENV = {"DEVBOX_LIFETIME_MIN_SECONDS": "2", "DEVBOX_LIFETIME_CHECK_SECONDS": "1"}


def test_lifetime_fields_defaults_and_validation(server):
    b = server.create({"name": "defaults"})
    assert b["idle_timeout_seconds"] == 3600 and b["ttl_seconds"] is None and b["expires_at"] is None
    assert b["last_activity_at"] is not None
    off = server.create({"name": "off", "idle_timeout_seconds": 0, "ttl_seconds": 0})
    assert off["idle_timeout_seconds"] is None and off["ttl_seconds"] is None
    t = server.create({"name": "ttl", "ttl_seconds": 3600})
    assert t["ttl_seconds"] == 3600 and t["expires_at"] is not None
    for body, field in [({"idle_timeout_seconds": 59}, "idle_timeout_seconds"), ({"idle_timeout_seconds": -1}, "idle_timeout_seconds"),
                        ({"idle_timeout_seconds": "60"}, "idle_timeout_seconds"), ({"ttl_seconds": 31536001}, "ttl_seconds"),
                        ({"ttl_seconds": 1.5}, "ttl_seconds")]:
        before = len(server.request("GET", "/api/v1/devboxes").json()["devboxes"])
        r = server.request("POST", "/api/v1/devboxes", json_body={"name": "bad", **body})
        assert r.status_code == 422 and err(r)["field"] == field, r.text
        assert len(server.request("GET", "/api/v1/devboxes").json()["devboxes"]) == before
    for x in (b, off, t):
        server.request("DELETE", f"/api/v1/devboxes/{x['id']}")


def test_idle_devbox_stops_activity_and_live_ssh_keep_it(fresh_server):
    s = fresh_server(env=LIFETIME_ENV).start()
    bid = s.wait_state(s.create({"name": "idle", "idle_timeout_seconds": 4})["id"])["id"]
    # Exec calls are activity: 8 s of calls every second keep it ready.
    for _ in range(8):
        assert ex(s, bid, "true").status_code == 200
        time.sleep(1)
    assert s.get(bid)["state"] == "ready"
    # A running exec is activity however quiet and long it is.
    import threading
    done = {}
    t = threading.Thread(target=lambda: done.update(r=ex(s, bid, "sleep 9; echo slept")))
    t.start()
    time.sleep(8)
    assert s.get(bid)["state"] == "ready"
    t.join(60)
    assert done["r"].status_code == 200 and done["r"].json()["stdout"] == "slept\n"
    # A live SSH connection is activity even when it sends nothing.
    d, key, pub = make_key()
    try:
        assert s.request("PUT", "/api/v1/users/me/ssh-key", json_body={"public_key": pub}).status_code == 204
        sid = s.request("POST", f"/api/v1/devboxes/{bid}/access/session").json()["session_id"]
        # Activity right before the login, so the key and session set-up above (slow on a
        # loaded machine) does not eat into the 4 s before the connection counts.
        assert ex(s, bid, "true").status_code == 200
        live = subprocess.Popen(ssh_argv(s, key, sid, "sleep 9"), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(8)
        assert s.get(bid)["state"] == "ready"
        live.wait(timeout=30)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    # Left alone, it stops (files kept), and starts again.
    assert wait_for(lambda: s.get(bid)["state"] == "stopped", timeout=30)
    assert s.request("POST", f"/api/v1/devboxes/{bid}/start").json()["state"] == "ready"


def test_ttl_destroys_and_a_restart_keeps_the_clocks(fresh_server):
    s = fresh_server(env=LIFETIME_ENV).start()
    short = s.create({"name": "ttl", "ttl_seconds": 3, "idle_timeout_seconds": 0})
    assert wait_for(lambda: s.get(short["id"])["state"] == "destroyed", timeout=30)
    # `destroyed` is written first (nothing new can start), the sandbox goes right after it
    assert wait_for(lambda: not containers_of(short["id"]), timeout=30)
    # Clocks survive a restart: an idle box and an expiring box, both past due while the service is down.
    idle = s.wait_state(s.create({"name": "idle", "idle_timeout_seconds": 5})["id"])
    exp = s.wait_state(s.create({"name": "exp", "ttl_seconds": 8, "idle_timeout_seconds": 0})["id"])
    assert idle["state"] == exp["state"] == "ready"
    before = s.get(idle["id"])["last_activity_at"]
    s.stop()
    time.sleep(9)
    s2 = fresh_server(data_dir=s.data_dir, token=s.token, env=LIFETIME_ENV).start()
    assert s2.get(idle["id"])["last_activity_at"] == before
    assert wait_for(lambda: s2.get(exp["id"])["state"] == "destroyed", timeout=30)
    assert wait_for(lambda: s2.get(idle["id"])["state"] == "stopped", timeout=30)


# -- MCP tools and CLI ---------------------------------------------------------------------------------

def test_mcp_tools_run_command_files_stop_start(server):
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    bid = server.wait_state(server.create({"name": "mcp-exec", "env": {"MARK": "m"}})["id"])["id"]

    def structured(r, tool):
        assert not r.is_error, f"{tool}: {r.content}"
        assert json.loads(r.content[0].text) == r.structured_content
        return r.structured_content

    async def go():
        async with create_mcp_http_client(headers={"X-Provider-Token": server.token}) as http:
            async with Client(streamable_http_client(server.base + "/mcp", http_client=http), mode="auto") as c:
                progress = []

                async def on_progress(p, total, message):
                    progress.append((p, message))

                r = structured(await c.call_tool(
                    "run_command", {"devbox_id": bid, "command": "echo start $MARK; sleep 1; echo end; exit 4"},
                    progress_callback=on_progress), "run_command")
                assert r["exit_code"] == 4 and r["stdout"] == "start m\nend\n" and r["timed_out"] is False
                assert progress and "start m" in progress[0][1]
                assert [p for p, _ in progress] == sorted(p for p, _ in progress)
                w = structured(await c.call_tool("write_file", {"devbox_id": bid, "path": "/workspace/t/x.sh",
                                                                 "content": "#!/bin/sh\necho hi\n", "mode": "755"}), "write_file")
                assert w == {"path": "/workspace/t/x.sh", "size": 18, "created": True}
                assert structured(await c.call_tool("run_command", {"devbox_id": bid, "command": ["/workspace/t/x.sh"]}),
                                  "run_command")["stdout"] == "hi\n"
                f = structured(await c.call_tool("read_file", {"devbox_id": bid, "path": "/workspace/t/x.sh"}), "read_file")
                assert f["content"] == "#!/bin/sh\necho hi\n" and f["encoding"] == "utf-8" and f["mode"] == "0755"
                ls = structured(await c.call_tool("list_files", {"devbox_id": bid, "path": "/workspace/t"}), "list_files")
                assert [e["name"] for e in ls["entries"]] == ["x.sh"]
                bad = await c.call_tool("read_file", {"devbox_id": bid, "path": "/workspace/../etc/shadow"})
                assert bad.is_error and "path" in bad.content[0].text
                st = structured(await c.call_tool("stop_devbox", {"devbox_id": bid}), "stop_devbox")
                assert st["devbox"]["state"] == "stopped"
                again = structured(await c.call_tool("stop_devbox", {"devbox_id": bid}), "stop_devbox")
                assert again["devbox"]["state"] == "stopped"
                refused = await c.call_tool("run_command", {"devbox_id": bid, "command": "true"})
                assert refused.is_error and "start_devbox" in refused.content[0].text
                up = structured(await c.call_tool("start_devbox", {"devbox_id": bid}), "start_devbox")
                assert up["devbox"]["state"] == "ready"
                f = structured(await c.call_tool("read_file", {"devbox_id": bid, "path": "/workspace/t/x.sh"}), "read_file")
                assert f["content"] == "#!/bin/sh\necho hi\n"

    anyio.run(go)
    server.request("DELETE", f"/api/v1/devboxes/{bid}")


def test_cli_exec_files_stop_start(server, tmp_path):
    env = {"DEVBOX_URL": server.base, "DEVBOX_PROVIDER_TOKEN": server.token}
    bid = server.wait_state(server.create({"name": "cli-exec", "env": {"MARK": "cli"}})["id"])["id"]
    r = server.cli("exec", bid, "echo $MARK; echo e >&2; exit 5", env=env, check=False)
    assert r.returncode == 5 and r.stdout == "cli\n" and r.stderr == "e\n"
    # Output is printed as it comes: the first line is there while the command still runs.
    from devbox_harness import BIN
    p = subprocess.Popen([BIN, "exec", bid, "echo first; sleep 5; echo second"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**server.env(), **env})
    assert p.stdout.readline() == "first\n"
    assert p.poll() is None
    assert p.stdout.readline() == "second\n" and p.wait(timeout=60) == 0
    r = server.cli("exec", "--cwd", "/tmp", bid, "--", "sh", "-c", "pwd", env=env, check=False)
    assert r.returncode == 0 and r.stdout == "/tmp\n", r.stderr
    r = server.cli("exec", "--timeout", "1", bid, "sleep 30", env=env, check=False)
    assert r.returncode == 124
    src = tmp_path / "in.txt"
    src.write_bytes(b"from the cli\n")
    r = server.cli("files", "put", bid, "/workspace/cli/in.txt", str(src), "--mode", "600", env=env)
    assert "created /workspace/cli/in.txt" in r.stdout
    assert server.cli("files", "get", bid, "/workspace/cli/in.txt", env=env).stdout == "from the cli\n"
    assert "in.txt" in server.cli("files", "ls", bid, "/workspace/cli", env=env).stdout
    r = server.cli("files", "get", bid, "/workspace/../etc/passwd", env=env, check=False)
    assert r.returncode == 1 and "path" in r.stderr
    assert "stopped" in server.cli("stop", bid, env=env).stdout
    r = server.cli("exec", bid, "true", env=env, check=False)
    assert r.returncode == 1 and "stopped" in r.stderr
    assert "ready" in server.cli("start", bid, env=env).stdout
    server.cli("files", "rm", bid, "/workspace/cli", "-r", env=env)
    assert server.cli("exec", bid, "ls /workspace", env=env).stdout == ""
    server.request("DELETE", f"/api/v1/devboxes/{bid}")


def test_mcp_stdio_remote_server_reaches_the_new_tools(server, tmp_path):
    """`devbox mcp --server URL` routes run_command, files and stop/start through the SDK."""
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client
    from devbox_harness import BIN

    bid = server.wait_state(server.create({"name": "stdio-exec", "env": {"MARK": "via-sdk"}})["id"])["id"]

    async def go():
        params = StdioServerParameters(
            command=BIN, args=["mcp", "--server", server.base, "--data-dir", str(tmp_path / "unused")],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
                 "DEVBOX_PROVIDER_TOKEN": server.token})
        with open(os.devnull, "w") as log:
            async with Client(stdio_client(params, errlog=log), read_timeout_seconds=180) as c:
                progress = []

                async def on_progress(p, total, message):
                    progress.append(message)

                r = await c.call_tool("run_command", {"devbox_id": bid, "command": "echo $MARK; sleep 1; exit 2"},
                                      progress_callback=on_progress)
                assert not r.is_error and r.structured_content["stdout"] == "via-sdk\n"
                assert r.structured_content["exit_code"] == 2
                # The SDK streams the exec, so output arrives as progress through devbox mcp too.
                assert progress and "via-sdk" in progress[0]
                w = await c.call_tool("write_file", {"devbox_id": bid, "path": "/workspace/b.bin", "content": "AP8=",
                                                     "encoding": "base64"})
                assert not w.is_error and w.structured_content["created"] is True
                f = await c.call_tool("read_file", {"devbox_id": bid, "path": "/workspace/b.bin"})
                assert f.structured_content["content"] == "AP8=" and f.structured_content["encoding"] == "base64"
                ls = await c.call_tool("list_files", {"devbox_id": bid})
                assert "b.bin" in [e["name"] for e in ls.structured_content["entries"]]
                bad = await c.call_tool("list_files", {"devbox_id": bid, "path": "/workspace/../x"})
                assert bad.is_error and "path" in bad.content[0].text
                st = await c.call_tool("stop_devbox", {"devbox_id": bid})
                assert st.structured_content["devbox"]["state"] == "stopped"
                up = await c.call_tool("start_devbox", {"devbox_id": bid})
                assert up.structured_content["devbox"]["state"] == "ready"

    anyio.run(go)
    server.request("DELETE", f"/api/v1/devboxes/{bid}")
