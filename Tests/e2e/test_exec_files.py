"""Exec and the files API over the real REST API, on real crun boxes (issue #9)."""
import json
import time

import pytest

from devbox_harness import Server


def err(r) -> dict:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    return body["error"]


@pytest.fixture(scope="module")
def box(server):
    d = server.wait_state(server.create({"name": "exec-files", "env": {"MARK": "from-the-box env $x 'q'"}})["id"])
    assert d["state"] == "ready", d
    yield d["id"]
    server.request("DELETE", f"/api/v1/devboxes/{d['id']}")


def ex(server, box, body, **kw):
    r = server.request("POST", f"/api/v1/devboxes/{box}/exec", json_body=body, **kw)
    assert r.status_code == 200, r.text
    return r.json()


def files(server, box, method, path, **kw):
    from urllib.parse import quote
    extra = kw.pop("query", "")
    return server.request(method, f"/api/v1/devboxes/{box}/files?path={quote(path, safe='')}{extra}", **kw)


# -- exec ------------------------------------------------------------------------------------------

def test_exec_shell_string_with_box_env_exit_code_and_separate_streams(server, box):
    r = ex(server, box, {"command": "echo \"$MARK\"; echo oops >&2; pwd; exit 7"})
    assert r["stdout"] == "from-the-box env $x 'q'\n/workspace\n"
    assert r["stderr"] == "oops\n"
    assert r["exit_code"] == 7 and r["signal"] is None and r["truncated"] is False and r["timed_out"] is False
    assert isinstance(r["duration_ms"], int) and r["duration_ms"] >= 0


def test_exec_argv_is_not_a_shell_and_takes_env_cwd_stdin(server, box):
    r = ex(server, box, {"command": ["printf", "%s|", "$HOME", "a b"], "cwd": "/tmp"})
    assert r["stdout"] == "$HOME|a b|" and r["exit_code"] == 0
    r = ex(server, box, {"command": ["sh", "-c", "pwd; echo $EXTRA $MARK; cat"], "cwd": "/tmp",
                         "env": {"EXTRA": "extra", "MARK": "overridden"}, "stdin": "line1\nline2"})
    assert r["stdout"] == "/tmp\nextra overridden\nline1\nline2"
    # stdin absent: /dev/null, so a reader ends at once.
    assert ex(server, box, {"command": "cat; echo done"})["stdout"] == "done\n"


def test_exec_unknown_program_is_127_not_an_api_error(server, box):
    r = ex(server, box, {"command": ["/no/such/program"]})
    assert r["exit_code"] == 127


def test_exec_timeout_kills_the_whole_process_group(server, box):
    t = time.time()
    r = ex(server, box, {"command": "sleep 300 & echo $! > /tmp/bg.pid; sleep 300", "timeout_seconds": 1})
    assert time.time() - t < 60
    assert r["timed_out"] is True and r["exit_code"] is None and r["signal"] == 9
    # The background sleep of the same group died too.
    alive = ex(server, box, {"command": "kill -0 $(cat /tmp/bg.pid) 2>/dev/null && echo alive || echo gone"})
    assert alive["stdout"] == "gone\n"


def test_exec_output_is_capped_keeping_the_tail(server, box):
    # The server keeps the last 1 MiB of each stream.
    r = ex(server, box, {"command": "head -c 3000000 /dev/zero | tr '\\0' a; echo END"})
    assert r["truncated"] is True and r["exit_code"] == 0
    assert len(r["stdout"]) == 1 << 20 and r["stdout"].endswith("aEND\n")


def test_exec_streams_output_as_sse_with_exit_last(server, box):
    import requests
    with requests.post(server.base + f"/api/v1/devboxes/{box}/exec", stream=True, timeout=60,
                       headers={**server.headers(), "Accept": "text/event-stream"},
                       json={"command": "echo one; sleep 1.5; echo two >&2; echo three; exit 3"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events, arrived = [], []
        for block in r.iter_lines(delimiter=b"\n\n"):
            if not block.strip():
                continue
            lines = dict(l.split(": ", 1) for l in block.decode().split("\n"))
            events.append((lines["event"], json.loads(lines["data"])))
            arrived.append(time.time())
    # The first line arrived while the command still ran (it sleeps 1.5 s after printing it),
    # not buffered until the end.
    assert events[0] == ("stdout", {"data": "one\n"})
    assert arrived[-1] - arrived[0] >= 0.5
    kinds = [e for e, _ in events]
    assert kinds[-1] == "exit" and kinds.count("exit") == 1
    out = "".join(d["data"] for e, d in events if e == "stdout")
    assert out == "one\nthree\n" and [d["data"] for e, d in events if e == "stderr"] == ["two\n"]
    assert events[-1][1]["exit_code"] == 3 and events[-1][1]["timed_out"] is False


def test_exec_sse_refusals_are_plain_json_errors(server, box):
    r = server.request("POST", f"/api/v1/devboxes/{box}/exec", json_body={"command": ""},
                       headers={"Accept": "text/event-stream"})
    assert r.status_code == 422 and err(r)["field"] == "command"


@pytest.mark.parametrize("body,field", [
    ({}, "command"),
    ({"command": 5}, "command"),
    ({"command": []}, "command"),
    ({"command": ""}, "command"),
    ({"command": "true", "timeout_seconds": 0}, "timeout_seconds"),
    ({"command": "true", "timeout_seconds": 1.5}, "timeout_seconds"),
    ({"command": "true", "cwd": "relative"}, "cwd"),
    ({"command": "true", "env": {"lower": "x"}}, "env.lower"),
    ({"command": "true", "env": {"K": 1}}, "env.K"),
])
def test_exec_validation_names_the_field(server, box, body, field):
    r = server.request("POST", f"/api/v1/devboxes/{box}/exec", json_body=body)
    assert r.status_code == 422, r.text
    assert err(r)["field"] == field


def test_exec_unknown_devbox_is_404_and_logs_carry_no_output(server, box):
    r = server.request("POST", "/api/v1/devboxes/dbx_nope/exec", json_body={"command": "true"})
    assert r.status_code == 404
    secret = "exec-secret-" + str(time.time())
    ex(server, box, {"command": "cat; echo $S", "stdin": secret + "-in", "env": {"S": secret + "-env"}})
    assert secret not in server.log()


# -- files -----------------------------------------------------------------------------------------

def test_files_round_trip_parents_mode_and_listing(server, box):
    data = bytes(range(256)) * 10
    r = files(server, box, "PUT", "/workspace/new/dir/blob.bin", data=data, query="&mode=750")
    assert r.status_code == 201, r.text
    assert r.json() == {"path": "/workspace/new/dir/blob.bin", "size": 2560, "created": True}
    g = files(server, box, "GET", "/workspace/new/dir/blob.bin")
    assert g.status_code == 200 and g.content == data
    assert g.headers["content-type"] == "application/octet-stream" and g.headers["x-devbox-file-mode"] == "0750"
    # The box sees it, owned by root with the mode asked for; created parents are 0755.
    seen = server.exec_in_box(box, "stat -c '%U:%G %a' new/dir/blob.bin new/dir; md5sum < new/dir/blob.bin")
    lines = seen.stdout.splitlines()
    assert lines[:2] == ["root:root 750", "root:root 755"]
    import hashlib
    assert lines[2].split()[0] == hashlib.md5(data).hexdigest()
    # Replacing keeps the mode unless one is given.
    r = files(server, box, "PUT", "/workspace/new/dir/blob.bin", data=b"v2")
    assert r.status_code == 200 and r.json()["created"] is False
    assert files(server, box, "GET", "/workspace/new/dir/blob.bin").headers["x-devbox-file-mode"] == "0750"
    lst = files(server, box, "GET", "/workspace/new/dir")
    assert lst.status_code == 200 and lst.headers["x-devbox-file-type"] == "directory"
    body = lst.json()
    assert body["path"] == "/workspace/new/dir" and body["truncated"] is False
    assert [(e["name"], e["type"], e["size"], e["mode"], e["path"]) for e in body["entries"]] == [
        ("blob.bin", "file", 2, "0750", "/workspace/new/dir/blob.bin")]


def test_files_write_into_the_box_own_tmpfs_mounts(server, box):
    # /tmp and /run are tmpfs mounts crun makes inside the box's user namespace: the host's
    # uid 0 has no mapping there, so creating an inode as it fails with EOVERFLOW (once a 503
    # "the file operation failed"); the files API creates them as the box's root.
    for path in ("/tmp/from-api/nested/note.txt", "/run/from-api.txt"):
        r = files(server, box, "PUT", path, data=b"in a tmpfs")
        assert r.status_code == 201, (path, r.text)
        assert files(server, box, "GET", path).content == b"in a tmpfs"
    seen = server.exec_in_box(box, "stat -c '%U:%G %a' /tmp/from-api /tmp/from-api/nested/note.txt /run/from-api.txt;"
                                   " findmnt -no FSTYPE /tmp; echo more >> /tmp/from-api/nested/note.txt && echo appended")
    assert seen.stdout.splitlines() == ["root:root 755", "root:root 644", "root:root 644", "tmpfs", "appended"], seen.stdout
    # Replacing an existing file there keeps working, and deleting it too.
    assert files(server, box, "PUT", "/tmp/from-api/nested/note.txt", data=b"v2").status_code == 200
    assert files(server, box, "DELETE", "/run/from-api.txt").status_code in (200, 204)
    assert server.exec_in_box(box, "test -e /run/from-api.txt || echo gone").stdout.strip() == "gone"


def test_files_odd_names_survive_the_query_string(server, box):
    path = "/workspace/odd dir/a b&c+d=e?#%.txt"
    assert files(server, box, "PUT", path, data=b"odd").status_code == 201
    assert files(server, box, "GET", path).content == b"odd"
    assert server.exec_in_box(box, "cat '/workspace/odd dir/a b&c+d=e?#%.txt'").stdout == "odd"
    names = [e["name"] for e in files(server, box, "GET", "/workspace/odd dir").json()["entries"]]
    assert names == ["a b&c+d=e?#%.txt"]


def test_files_see_the_box_mounts_not_the_host(server, box):
    server.exec_in_box(box, "echo in-tmpfs > /tmp/t.txt")
    assert files(server, box, "GET", "/tmp/t.txt").content == b"in-tmpfs\n"
    assert files(server, box, "GET", "/etc/hostname").content.decode().strip() == box


def test_files_delete_file_dir_and_recursive(server, box):
    for p in ["/workspace/del/a/x", "/workspace/del/b"]:
        assert files(server, box, "PUT", p, data=b"x").status_code == 201
    r = files(server, box, "DELETE", "/workspace/del")
    assert r.status_code == 409 and "recursive" in err(r)["message"]
    assert files(server, box, "DELETE", "/workspace/del/b").status_code == 204
    assert files(server, box, "GET", "/workspace/del/b").status_code == 404
    assert files(server, box, "DELETE", "/workspace/del", query="&recursive=true").status_code == 204
    assert server.exec_in_box(box, "test -e /workspace/del && echo still || echo gone").stdout == "gone\n"
    assert files(server, box, "DELETE", "/workspace/nothing-here").status_code == 404


@pytest.mark.parametrize("path", ["/workspace/../etc/shadow", "workspace/x", "/..", "/a/\x00"])
def test_files_refuse_dotdot_and_relative_paths(server, box, path):
    for method in ("GET", "PUT", "DELETE"):
        r = files(server, box, method, path, data=b"x" if method == "PUT" else None)
        assert r.status_code == 422, (method, r.text)
        assert err(r)["field"] == "path"


def test_files_refuse_symlinks_out_of_the_box(server, box):
    host_shadow = open("/etc/shadow", "rb").read()
    server.exec_in_box(box, "ln -s /etc/shadow esc-shadow; ln -s / esc-root; ln -s /etc esc-etc; "
                            "ln -s ../../../../../../etc esc-up; mkdir -p real; echo inside > real/f; ln -s real/f rel-link; "
                            "ln -s real rel-dir")
    for path in ["/workspace/esc-shadow", "/workspace/esc-root", "/workspace/esc-etc/shadow",
                 "/workspace/esc-etc", "/workspace/esc-up/shadow"]:
        r = files(server, box, "GET", path)
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert err(r)["field"] == "path" and "outside" in err(r)["message"]
        assert host_shadow[:20] not in r.content
    # Writing through a symlinked parent directory is refused too, and nothing lands on the host.
    r = files(server, box, "PUT", "/workspace/esc-etc/devbox-e2e-escape", data=b"pwned")
    assert r.status_code == 422 and err(r)["field"] == "path"
    import os
    assert not os.path.exists("/etc/devbox-e2e-escape")
    # A symlink planted at the name itself is refused, not followed.
    r = files(server, box, "PUT", "/workspace/esc-shadow", data=b"pwned")
    assert r.status_code == 422
    assert open("/etc/shadow", "rb").read() == host_shadow
    # Relative links that stay inside work.
    assert files(server, box, "GET", "/workspace/rel-link").content == b"inside\n"
    assert files(server, box, "GET", "/workspace/rel-dir/f").content == b"inside\n"
    lst = {e["name"]: e for e in files(server, box, "GET", "/workspace").json()["entries"]}
    assert lst["esc-shadow"]["type"] == "symlink" and lst["esc-shadow"]["link_target"] == "/etc/shadow"


def test_files_refuse_pseudo_filesystems_and_devices(server, box):
    for path in ["/proc/1/environ", "/proc/1/status", "/sys/kernel/hostname"]:
        r = files(server, box, "GET", path)
        assert r.status_code in (404, 422), (path, r.text)
    r = files(server, box, "GET", "/proc/1/environ")
    assert r.status_code == 422 and err(r)["field"] == "path"
    r = files(server, box, "PUT", "/dev/null", data=b"x")
    # In a user namespace crun binds the host's device nodes (no mknod there): /dev/null is
    # then a mount point of the box (409); otherwise a device (422). Never written.
    assert r.status_code in (409, 422), r.text
    r = files(server, box, "GET", "/dev/zero")
    assert r.status_code == 422


def test_files_missing_path_and_bad_mode(server, box):
    r = server.request("GET", f"/api/v1/devboxes/{box}/files")
    assert r.status_code == 422 and err(r)["field"] == "path"
    r = files(server, box, "PUT", "/workspace/m", data=b"x", query="&mode=999")
    assert r.status_code == 422 and err(r)["field"] == "mode"
    assert files(server, box, "GET", "/workspace/no/such").status_code == 404
    r = files(server, box, "PUT", "/", data=b"x")
    assert r.status_code == 422 and err(r)["field"] == "path"


def test_files_size_limits_are_413(fresh_server):
    s = fresh_server(env={"DEVBOX_FILE_SIZE_LIMIT": "1000"}).start()
    b = s.wait_state(s.create({"name": "limits"})["id"])["id"]
    assert files(s, b, "PUT", "/workspace/ok", data=b"x" * 1000).status_code == 201
    r = files(s, b, "PUT", "/workspace/big", data=b"x" * 1001)
    assert r.status_code == 413 and err(r)["code"] == "payload_too_large"
    assert files(s, b, "GET", "/workspace/big").status_code == 404  # nothing half-written
    s.exec_in_box(b, "head -c 5000 /dev/zero > /workspace/large")
    r = files(s, b, "GET", "/workspace/large")
    assert r.status_code == 413 and err(r)["code"] == "payload_too_large"


@pytest.mark.parametrize("method,path,recursive", [
    ("DELETE", "/proc", True), ("DELETE", "/proc", False), ("DELETE", "/sys", True), ("DELETE", "/dev", True),
    ("DELETE", "/dev/pts", True), ("DELETE", "/workspace", True), ("DELETE", "/.devbox", True),
    ("DELETE", "/tmp", True), ("PUT", "/.devbox/init", False),
])
def test_mount_points_of_the_box_are_refused(server, box, method, path, recursive):
    """Issue 18: the files API never removes or replaces a mount point of the box (nor a
    directory holding one): 409 naming the path, and the box keeps working."""
    kw = {"data": b"#!/bin/sh\necho owned\n"} if method == "PUT" else {}
    query = "&recursive=true" if recursive else ""
    r = files(server, box, method, path, query=query, **kw)
    assert r.status_code == 409, r.text
    assert path in r.json()["error"]["message"], r.text
    out = server.request("POST", f"/api/v1/devboxes/{box}/exec", json_body={"command": "ls /proc/self >/dev/null && echo ok"}).json()
    assert out["stdout"] == "ok\n", out
