"""Snapshots (issue 23) through every client face against a real `devbox serve` with real crun
boxes: the `devbox` command line (snapshot, snapshots, snapshot get/rm, fork, create --snapshot),
the MCP tools through the official Python MCP SDK (stdio `devbox mcp` and HTTP `/mcp`), and the
dashboard in headless Chromium (snapshot and fork forms, the snapshots list with sizes, delete,
create from a snapshot). The service side (layers, pause, isolation, quota) is tested in
test_snapshots.py."""
from __future__ import annotations

import json
import os
import re

import anyio
import pytest

from dashboard_browser import Browser
from devbox_harness import Server
from test_cli import devbox, one_error_line
from test_mcp import http_client, stdio, structured

MARK_FILE = "/workspace/snap-mark.txt"


def ready_box(s: Server, name: str, body: dict | None = None, headers: dict | None = None) -> dict:
    d = s.create({"name": name, **(body or {})}, headers=headers)
    d = s.wait_state(d["id"])
    assert d["state"] == "ready", s.operations(d["id"])
    return d


def run_in(s: Server, devbox_id: str, command: str) -> dict:
    r = s.request("POST", f"/api/v1/devboxes/{devbox_id}/exec", json_body={"command": command}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def write_mark(s: Server, devbox_id: str, text: str) -> None:
    r = run_in(s, devbox_id, f"printf '%s' '{text}' > {MARK_FILE} && dd if=/dev/urandom of=/workspace/blob bs=1M count=2 2>/dev/null")
    assert r["exit_code"] == 0, r


def mark_of(s: Server, devbox_id: str) -> str:
    r = run_in(s, devbox_id, f"cat {MARK_FILE}")
    assert r["exit_code"] == 0, r
    return r["stdout"]


def snapshots_of(s: Server) -> list[dict]:
    r = s.request("GET", "/api/v1/snapshots")
    assert r.status_code == 200, r.text
    return r.json()["snapshots"]


def cleanup(s: Server) -> None:
    s.delete_all()
    for snap in snapshots_of(s):
        s.request("DELETE", f"/api/v1/snapshots/{snap['id']}")


@pytest.fixture(scope="module")
def server():
    s = Server().start()
    yield s
    try:
        cleanup(s)
    finally:
        s.close()


# -- CLI -----------------------------------------------------------------------------------------

def test_cli_snapshot_list_create_from_it_fork_and_remove(server):
    s = server
    original = ready_box(s, "cli-snap-src")
    write_mark(s, original["id"], "from-the-original")

    r = devbox(s, "snapshot", original["id"], "cli-base", "--json")
    assert r.returncode == 0, r.stderr
    snap = json.loads(r.stdout)
    assert snap["id"].startswith("snap_") and snap["name"] == "cli-base" and snap["devbox_id"] == original["id"]
    assert snap["size_bytes"] >= 2 << 20  # the 2 MiB blob is in it
    assert set(snap) >= {"id", "name", "devbox_id", "image", "size_bytes", "created_at"}

    # Human output names the snapshot and its size.
    r = devbox(s, "snapshot", original["id"], "cli-second")
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(rf"snapshot snap_\S+ \(cli-second\) of {original['id']}: [\d.]+ MiB\n", r.stdout), r.stdout

    # A taken name: one error line, exit 1.
    r = devbox(s, "snapshot", original["id"], "cli-base")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "cli-base" in one_error_line(r)

    # List: the API's JSON, and a table with sizes and a total.
    r = devbox(s, "snapshots", "--json")
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)["snapshots"]
    assert {"cli-base", "cli-second"} <= {x["name"] for x in listed}
    r = devbox(s, "snapshots")
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "DEVBOX", "IMAGE", "SIZE", "CREATED"]
    row = next(x for x in rows if x.startswith(snap["id"]))
    assert row.split()[1:3] == ["cli-base", original["id"]] and "MiB" in row
    assert re.fullmatch(r"\d+ snapshots?, [\d.]+ MiB", rows[-1]), rows[-1]

    r = devbox(s, "snapshot", "get", "cli-base")
    assert r.returncode == 0, r.stderr
    fields = {l.split(":", 1)[0]: l.split(":", 1)[1].strip() for l in r.stdout.splitlines()}
    assert fields["id"] == snap["id"] and fields["devbox"] == original["id"] and fields["size"].endswith("MiB")
    r = devbox(s, "snapshot", "get", snap["id"], "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    # created_at: the service's stored time may differ from the 201's by a few ms (its own matter).
    assert {k: v for k, v in got.items() if k != "created_at"} == {k: v for k, v in snap.items() if k != "created_at"}
    assert got["created_at"][:19] == snap["created_at"][:19]

    # create --snapshot: the new box has the original's files.
    r = devbox(s, "create", "cli-from-snap", "--snapshot", "cli-base", "--wait", "--json")
    assert r.returncode == 0, r.stderr
    child = json.loads(r.stdout)
    assert child["state"] == "ready"
    assert mark_of(s, child["id"]) == "from-the-original"

    # snapshot and image together: refused, naming the field.
    r = devbox(s, "create", "cli-both", "--snapshot", "cli-base", "--image", "debian")
    assert r.returncode == 1 and "snapshot" in one_error_line(r), r.stderr

    # fork -n 3 --wait: a snapshot and three ready boxes with the files, each on its own.
    r = devbox(s, "fork", original["id"], "-n", "3", "--name", "cli-fork", "--wait", "--json", timeout=600)
    assert r.returncode == 0, r.stderr
    forked = json.loads(r.stdout)
    assert forked["snapshot"]["name"] == "cli-fork" and forked["snapshot"]["devbox_id"] == original["id"]
    boxes = forked["devboxes"]
    assert len(boxes) == 3 and all(b["state"] == "ready" for b in boxes), boxes
    assert sorted(b["name"] for b in boxes) == ["cli-fork-1", "cli-fork-2", "cli-fork-3"]
    assert [l for l in r.stderr.splitlines() if l.startswith("ready ")].__len__() == 3, r.stderr
    run_in(s, boxes[0]["id"], f"echo changed > {MARK_FILE}")
    assert mark_of(s, boxes[1]["id"]) == "from-the-original"
    assert mark_of(s, original["id"]) == "from-the-original"

    # Human fork output without --wait.
    r = devbox(s, "fork", original["id"], "--name", "cli-fork-one")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("snapshot snap_") and "(cli-fork-one)" in lines[0]
    assert len(lines) == 2 and re.fullmatch(r"created dbx_\S+ \(cli-fork-one, \w+\)", lines[1]), lines

    # Bad counts are refused before anything is sent.
    for bad in ("0", "33"):
        r = devbox(s, "fork", original["id"], "-n", bad)
        assert r.returncode == 64, (bad, r.stdout, r.stderr)

    # rm by name; then it is gone.
    r = devbox(s, "snapshot", "rm", "cli-second")
    assert r.returncode == 0 and r.stdout.strip() == "deleted snapshot cli-second", r.stderr
    r = devbox(s, "snapshot", "get", "cli-second")
    assert r.returncode == 1 and "not found" in one_error_line(r)
    assert "cli-second" not in {x["name"] for x in snapshots_of(s)}
    cleanup(s)


# -- MCP -----------------------------------------------------------------------------------------

def test_mcp_snapshot_fork_and_create_from_snapshot_over_http_and_stdio(server):
    s = server
    claude = "sk-ant-mcp-fork-" + os.urandom(12).hex()
    original = ready_box(s, "mcp-snap-src", {"credential_profile": {"inject_claude_token": True}},
                         headers={"X-Claude-Token": claude})
    write_mark(s, original["id"], "mcp-original")

    async def over_http():
        async with http_client(s, "auto", headers={"X-Claude-Token": claude}) as c:
            tools = {t.name: t for t in (await c.list_tools()).tools}
            assert {"snapshot_devbox", "fork_devbox"} <= set(tools)
            assert "snapshot" in tools["create_devbox"].input_schema["properties"]
            assert tools["snapshot_devbox"].input_schema["required"] == ["devbox_id", "name"]

            snap = structured(await c.call_tool("snapshot_devbox", {"devbox_id": original["id"], "name": "mcp-base"}),
                              "snapshot_devbox")
            assert snap["id"].startswith("snap_") and snap["name"] == "mcp-base" and snap["size_bytes"] >= 2 << 20

            again = await c.call_tool("snapshot_devbox", {"devbox_id": original["id"], "name": "mcp-base"})
            assert again.is_error and "another name" in again.content[0].text, again.content

            made = structured(await c.call_tool("create_devbox", {"name": "mcp-from-snap", "snapshot": "mcp-base",
                                                                  "wait": True}), "create_devbox")
            assert made["devbox"]["state"] == "ready"
            out = structured(await c.call_tool("run_command", {"devbox_id": made["devbox"]["id"],
                                                               "command": f"cat {MARK_FILE}"}), "run_command")
            assert out["stdout"] == "mcp-original", out

            # fork: the new boxes get the AI token from this MCP server (the original asked for it).
            forked = structured(await c.call_tool("fork_devbox", {"devbox_id": original["id"], "count": 2,
                                                                  "name": "mcp-fork"}), "fork_devbox")
            assert forked["snapshot"]["name"] == "mcp-fork" and len(forked["devboxes"]) == 2
            for box in forked["devboxes"]:
                assert box["credential_profile"]["inject_claude_token"] is True
                w = structured(await c.call_tool("wait_for_ready", {"devbox_id": box["id"]}), "wait_for_ready")
                assert w["devbox"]["state"] == "ready"
                out = structured(await c.call_tool("run_command", {
                    "devbox_id": box["id"], "command": f"cat {MARK_FILE}; test \"$ANTHROPIC_API_KEY\" = {claude} && echo token-ok"}),
                    "run_command")
                assert out["stdout"] == "mcp-originaltoken-ok\n", out

            bad = await c.call_tool("fork_devbox", {"devbox_id": original["id"], "count": 33})
            assert bad.is_error and "count" in bad.content[0].text

            assert {"mcp-base", "mcp-fork"} <= {x["name"] for x in snapshots_of(s)}
            # The token never shows in a result.
            assert claude not in json.dumps(forked) + json.dumps(snap)

    async def over_stdio():
        async with stdio(s.data_dir, "auto") as c:
            snap = structured(await c.call_tool("snapshot_devbox", {"devbox_id": original["id"], "name": "mcp-stdio"}),
                              "snapshot_devbox")
            assert snap["devbox_id"] == original["id"]
            assert "mcp-stdio" in {x["name"] for x in snapshots_of(s)}
            forked = structured(await c.call_tool("fork_devbox", {"devbox_id": original["id"], "copy_env": True}),
                                "fork_devbox")
            assert len(forked["devboxes"]) == 1
            # No token held by this stdio server: the fork gets none.
            assert forked["devboxes"][0]["credential_profile"]["inject_claude_token"] is False

    anyio.run(over_http)
    anyio.run(over_stdio)
    cleanup(s)


# -- dashboard -----------------------------------------------------------------------------------

@pytest.fixture
def browser():
    b = Browser()
    yield b
    b.close()


def test_dashboard_snapshot_fork_list_create_from_and_delete(server, browser):
    s, b = server, browser
    original = ready_box(s, "dash-snap-src", {"env": {"DASH_ENV": "env-value-" + os.urandom(6).hex()}})
    write_mark(s, original["id"], "dash-original")

    b.get(s.base + "/login")
    b.type("#provider_token", s.token)
    b.submit("#sign-in")
    assert b.path() == "/"

    # Snapshot from the devbox page; the list shows it with its size.
    b.get(s.base + f"/devboxes/{original['id']}")
    b.wait_for("#snapshot-form")
    b.shot("snapshot-01-devbox-section")
    b.type("#snapshot_name", "dash-base")
    b.submit("#take-snapshot")
    assert b.path() == "/snapshots?notice=snapshot_created", b.path()
    snap = next(x for x in snapshots_of(s) if x["name"] == "dash-base")
    row = b.find(f'tr[data-snapshot="{snap["id"]}"]')
    assert row.find_element("css selector", "[data-snapshot-name]").text == "dash-base"
    size = row.find_element("css selector", "[data-snapshot-size]")
    assert size.get_attribute("data-snapshot-size") == str(snap["size_bytes"]) and size.text.endswith("MiB")
    assert "MiB in all" in b.find("#snapshots-total").text
    b.shot("snapshot-02-list")

    # A taken name comes back on the devbox page as a field error.
    b.get(s.base + f"/devboxes/{original['id']}")
    b.type("#snapshot_name", "dash-base")
    b.submit("#take-snapshot")
    assert "dash-base" in b.find("#err-snapshot_name").text

    # New devbox from the snapshot: the create form comes with it chosen.
    b.get(s.base + "/snapshots")
    b.find(f'tr[data-snapshot="{snap["id"]}"] [data-snapshot-create]').click()
    b.wait_for("#create-form")
    assert b.find("#snapshot option:checked").get_attribute("value") == snap["id"]
    b.type("#name", "dash-from-snap")
    b.submit("#create")
    m = re.match(r"^/devboxes/(dbx_[a-z0-9]+)\?notice=created$", b.path())
    assert m, b.path()
    child = s.wait_state(m.group(1))
    assert child["state"] == "ready" and mark_of(s, child["id"]) == "dash-original"

    # Fork two with the env values copied.
    b.get(s.base + f"/devboxes/{original['id']}")
    b.type("#fork_count", "2")
    b.type("#fork_name", "dash-fork")
    b.find("#fork_copy_env").click()
    b.submit("#fork-devbox")
    assert b.path() == "/?notice=forked", b.path()
    forks = [d for d in s.request("GET", "/api/v1/devboxes").json()["devboxes"] if d["name"].startswith("dash-fork-")]
    assert sorted(d["name"] for d in forks) == ["dash-fork-1", "dash-fork-2"]
    for d in forks:
        assert b.find(f'tr[data-devbox="{d["id"]}"]')
        d = s.wait_state(d["id"])
        assert d["state"] == "ready" and d["env_keys"] == ["DASH_ENV"]
        assert mark_of(s, d["id"]) == "dash-original"
    b.shot("snapshot-03-forked")

    # A bad count is a field error, not a fork.
    b.get(s.base + f"/devboxes/{original['id']}")
    b.driver.execute_script("document.getElementById('fork_count').removeAttribute('max')")
    b.type("#fork_count", "40")
    b.submit("#fork-devbox")
    assert b.find("#err-fork_count").text

    # Delete from the list.
    b.get(s.base + "/snapshots")
    b.submit(f'tr[data-snapshot="{snap["id"]}"] [data-snapshot-delete]')
    assert b.path() == "/snapshots?notice=snapshot_deleted"
    assert not b.find_all(f'tr[data-snapshot="{snap["id"]}"]')
    assert "dash-base" not in {x["name"] for x in snapshots_of(s)}
    cleanup(s)
