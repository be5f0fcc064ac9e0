"""The `devbox` command line (client commands) end to end against a real `devbox serve`."""
import json
import os
import pty
import secrets
import select
import subprocess
import tempfile
import time

import pytest

from devbox_harness import BIN, free_port

OPS = ["provision", "inject_credentials", "clone_repositories", "run_setup_commands", "publish_access"]


def clean_env(server, extra: dict | None = None) -> dict:
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("DEVBOX_") and k not in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")}
    e.update({"DEVBOX_URL": server.base, "DEVBOX_PROVIDER_TOKEN": server.token})
    if extra:
        e.update(extra)
    return e


def devbox(server, *args: str, env: dict | None = None, input: str | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([BIN, *args], capture_output=True, text=True, env=clean_env(server, env), input=input,
                          timeout=timeout)


def one_error_line(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {r.stderr!r}"
    assert lines[0].startswith("devbox: error: "), lines[0]
    return lines[0]


def keygen(directory: str) -> str:
    path = os.path.join(directory, "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cli@test", "-f", path], check=True)
    return path


# -- create --wait, get, list, logs ------------------------------------------------------------

def test_create_wait_json_get_list_logs(server):
    r = devbox(server, "create", "cli-ok", "--setup", "echo hello-from-cli-setup", "--env", "FOO=bar",
               "--env", "FROM_ENV", "--wait", "--json", env={"FROM_ENV": "passed-through"})
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["state"] == "ready" and d["name"] == "cli-ok"
    assert sorted(d["env_keys"]) == ["FOO", "FROM_ENV"]
    assert d["setup_commands"] == ["echo hello-from-cli-setup"]

    # Not a terminal: plain lines, one per status change, no redraws.
    assert "\r" not in r.stderr and "\x1b[" not in r.stderr
    progress = [l for l in r.stderr.splitlines() if l.startswith("[")]
    assert len(progress) == len(set(progress)), progress
    for i, op in enumerate(OPS, 1):
        finals = [l for l in progress if l.startswith(f"[{i}/5] {op}  ") and "running" not in l]
        assert len(finals) == 1, (op, progress)
    assert any(l.startswith("[4/5] run_setup_commands  succeeded") for l in progress), progress
    assert any(l.startswith("[3/5] clone_repositories  skipped") for l in progress), progress

    # get --json is the API's JSON.
    r = devbox(server, "get", d["id"], "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == server.get(d["id"])

    r = devbox(server, "list", "--json")
    assert r.returncode == 0, r.stderr
    assert d["id"] in [b["id"] for b in json.loads(r.stdout)["devboxes"]]

    r = devbox(server, "list")
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "STATE", "PLAN", "CREATED"]
    row = next(row for row in rows if row.startswith(d["id"]))
    assert row.split()[1:4] == ["cli-ok", "ready", d["plan"]]

    r = devbox(server, "get", d["id"])
    assert r.returncode == 0, r.stderr
    fields = {l.split(":", 1)[0]: l.split(":", 1)[1].strip() for l in r.stdout.splitlines() if ":" in l}
    assert fields["id"] == d["id"] and fields["state"] == "ready" and fields["env"] == "FOO, FROM_ENV"

    r = devbox(server, "logs", d["id"])
    assert r.returncode == 0, r.stderr
    assert "==> run_setup_commands  succeeded" in r.stdout
    assert "$ echo hello-from-cli-setup\nhello-from-cli-setup\n" in r.stdout
    assert "passed-through" not in r.stdout + r.stderr  # env values are not echoed

    r = devbox(server, "logs", d["id"], "--json")
    assert r.returncode == 0, r.stderr
    ops = json.loads(r.stdout)["operations"]
    assert [o["name"] for o in ops] == OPS
    assert "hello-from-cli-setup" in ops[3]["output"]

    r = devbox(server, "delete", d["id"])
    assert r.returncode == 0 and r.stdout.strip() == f"deleted {d['id']}", r.stderr
    assert server.get(d["id"])["state"] == "destroyed"


def test_create_wait_failure_prints_the_tail(server):
    r = devbox(server, "create", "cli-fail", "--setup", "echo tail-marker-out; echo tail-marker-err >&2; exit 3",
               "--wait")
    assert r.returncode == 4, (r.stdout, r.stderr)
    errors = [l for l in r.stderr.splitlines() if l.startswith("devbox: error:")]
    assert len(errors) == 1, r.stderr
    assert "failed in run_setup_commands: " in errors[0] and "exited with code 3" in errors[0], errors[0]
    assert "--- output tail ---" in r.stderr
    tail = r.stderr.split("--- output tail ---", 1)[1]
    assert "tail-marker-out" in tail and "tail-marker-err" in tail
    assert any(l.startswith("[4/5] run_setup_commands  failed") for l in r.stderr.splitlines()), r.stderr
    devbox_id = r.stderr.split("created ", 1)[1].split()[0]
    assert server.get(devbox_id)["state"] == "failed"


def test_create_without_wait_prints_the_id(server):
    r = devbox(server, "create", "cli-nowait", "--setup", "sleep 30")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("created dbx_"), r.stdout
    devbox_id = r.stdout.split()[1]
    assert server.get(devbox_id)["name"] == "cli-nowait"
    assert devbox(server, "delete", devbox_id).returncode == 0


def test_wait_on_a_terminal_redraws_one_line_per_step(server):
    master, slave = pty.openpty()
    p = subprocess.Popen([BIN, "create", "cli-tty", "--setup", "sleep 2", "--wait"], stdout=subprocess.PIPE,
                         stderr=slave, stdin=subprocess.DEVNULL, env=clean_env(server))
    os.close(slave)
    chunks = []
    deadline = time.time() + 180
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif p.poll() is not None:
            break
    out = p.stdout.read().decode()
    assert p.wait(timeout=30) == 0
    os.close(master)
    tty = b"".join(chunks).decode(errors="replace")
    assert "\r\x1b[K" in tty, tty
    assert "✓ [4/5] run_setup_commands  succeeded" in tty, tty
    assert "- [3/5] clone_repositories  skipped" in tty, tty
    # The running step was redrawn in place: its "running" frames are not separate lines.
    finished_lines = [l for l in tty.replace("\r\x1b[K", "\n").split("\n") if "run_setup_commands" in l]
    assert any("running" in l for l in finished_lines), tty
    devbox_id = out.split()[1]
    assert devbox(server, "delete", devbox_id).returncode == 0


def test_logs_follow_prints_new_output_once(server):
    r = devbox(server, "create", "cli-follow", "--json",
               "--setup", "echo step-1; sleep 1", "--setup", "echo step-2; sleep 1", "--setup", "echo step-3")
    assert r.returncode == 0, r.stderr
    devbox_id = json.loads(r.stdout)["id"]
    r = devbox(server, "logs", devbox_id, "--follow")
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == f"devbox {devbox_id} is ready"
    for i in (1, 2, 3):
        assert r.stdout.count(f"\nstep-{i}\n") == 1, r.stdout
    assert r.stdout.index("step-1") < r.stdout.index("step-2") < r.stdout.index("step-3")
    for op in OPS:
        assert r.stdout.count(f"==> {op}  ") >= 1
    assert "==> run_setup_commands  succeeded" in r.stdout

    # A failing devbox: --follow ends with exit 4.
    r = devbox(server, "create", "cli-follow-fail", "--json", "--setup", "echo doomed; exit 5")
    devbox_id = json.loads(r.stdout)["id"]
    r = devbox(server, "logs", devbox_id, "--follow")
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert "doomed" in r.stdout and "==> run_setup_commands  failed" in r.stdout
    assert r.stderr.strip() == f"devbox {devbox_id} is failed"


# -- errors ---------------------------------------------------------------------------------------

def test_unreachable_server_is_exit_3_with_the_url(server):
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["list"], ["get", "dbx_x", "--json"], ["create", "x", "--wait"]):
        r = devbox(server, *args, env={"DEVBOX_URL": url})
        assert r.returncode == 3, (args, r.stderr)
        line = one_error_line(r)
        assert "cannot reach" in line and url in line, line
        assert server.token not in line
    # --url wins over DEVBOX_URL.
    r = devbox(server, "list", "--url", url)
    assert r.returncode == 3 and url in one_error_line(r)


def test_bad_token_is_exit_1_provider_token_rejected(server):
    r = devbox(server, "list", env={"DEVBOX_PROVIDER_TOKEN": "dbx_pt_wrong-token-value"})
    assert r.returncode == 1
    line = one_error_line(r)
    assert "provider token rejected" in line and "wrong-token-value" not in line
    r = devbox(server, "list", "--provider-token", "dbx_pt_other-wrong-value")
    assert r.returncode == 1 and "provider token rejected" in one_error_line(r)


def test_validation_errors_name_the_field(server):
    r = devbox(server, "create", "x", "--setup", "true", "--setup-timeout", "5")
    assert r.returncode == 1
    line = one_error_line(r)
    assert "(field: setup_timeout_seconds)" in line and "30" in line, line
    r = devbox(server, "create", "x", "--env", "lower=1")
    assert r.returncode == 1 and "(field: env.lower)" in one_error_line(r)
    r = devbox(server, "create", "x", "--repo", "own/er/name")
    assert r.returncode == 64 and "OWNER/NAME" in one_error_line(r)
    r = devbox(server, "get", "dbx_doesnotexist")
    assert r.returncode == 1 and "not found" in one_error_line(r)


# -- egress policy: create --allow/--deny/--deny-all, devbox network ------------------------

def test_egress_policy_on_create_get_and_network(server):
    r = devbox(server, "create", "cli-net", "--allow", "API.example.com", "--allow", "*.example.org",
               "--deny", "198.51.100.0/24", "--deny-all", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    want = {"egress": "deny_all", "allow": ["api.example.com", "*.example.org"], "deny": ["198.51.100.0/24"]}
    assert d["network"] == want
    assert server.request("GET", f"/api/v1/devboxes/{d['id']}/network").json() == want

    # get: one line; network: three, as stored; --json: the API's.
    r = devbox(server, "get", d["id"])
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stdout.splitlines() if l.startswith("network:"))
    assert line.split(None, 1)[1] == "deny_all, allow: api.example.com, *.example.org; deny: 198.51.100.0/24", line
    r = devbox(server, "network", d["id"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("egress: deny_all\nallow:  api.example.com, *.example.org\n"
                        "deny:   198.51.100.0/24\n"), r.stdout
    r = devbox(server, "network", d["id"], "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == want, r.stderr

    # Replacing: the whole policy (the allow-list not repeated is gone), applied to the live box.
    r = devbox(server, "network", d["id"], "--allow-all", "--deny", "Evil.Example.com", "--deny", "198.51.100.9")
    assert r.returncode == 0, r.stderr
    replaced = {"egress": "allow_all", "allow": [], "deny": ["evil.example.com", "198.51.100.9/32"]}
    assert r.stdout == "egress: allow_all\nallow:  (none)\ndeny:   evil.example.com, 198.51.100.9/32\n", r.stdout
    assert server.request("GET", f"/api/v1/devboxes/{d['id']}/network").json() == replaced
    r = devbox(server, "get", d["id"])
    line = next(l for l in r.stdout.splitlines() if l.startswith("network:"))
    assert line.split(None, 1)[1] == "allow_all, deny: evil.example.com, 198.51.100.9/32", line
    r = devbox(server, "network", d["id"], "--deny-all", "--allow", "pypi.org", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"egress": "deny_all", "allow": ["pypi.org"], "deny": []}
    assert server.get(d["id"])["network"] == {"egress": "deny_all", "allow": ["pypi.org"], "deny": []}

    # A bad entry: exit 1, one line naming the flag, its value and the field; nothing changed.
    r = devbox(server, "network", d["id"], "--deny-all", "--allow", "ok.example.com", "--allow", "10.0.0.0/8")
    assert r.returncode == 1, (r.stdout, r.stderr)
    line = one_error_line(r)
    assert "--allow '10.0.0.0/8'" in line and "(field: network.allow[1])" in line, line
    assert server.get(d["id"])["network"]["allow"] == ["pypi.org"]
    r = devbox(server, "create", "cli-bad-net", "--deny", "example.org", "--deny", "169.254.169.254")
    assert r.returncode == 1
    line = one_error_line(r)
    assert "--deny '169.254.169.254'" in line and "(field: network.deny[1])" in line, line
    assert "cli-bad-net" not in [b["name"] for b in server.request("GET", "/api/v1/devboxes").json()["devboxes"]]

    # Without any of the flags: the server's default.
    r = devbox(server, "create", "cli-default-net", "--json")
    assert r.returncode == 0, r.stderr
    plain = json.loads(r.stdout)
    assert plain["network"] == {"egress": "allow_all", "allow": [], "deny": []}

    # Usage: a change needs its mode (the policy is replaced as a whole); not both modes.
    r = devbox(server, "network", d["id"], "--allow", "pypi.org")
    assert r.returncode == 64 and "--deny-all" in r.stderr, r.stderr
    r = devbox(server, "network", d["id"], "--deny-all", "--allow-all")
    assert r.returncode == 64, r.stderr
    assert server.get(d["id"])["network"]["allow"] == ["pypi.org"]
    r = devbox(server, "network", "--help")
    assert r.returncode == 0 and "replaces the whole policy" in " ".join(r.stdout.split()), r.stdout
    r = devbox(server, "network", "dbx_doesnotexist")
    assert r.returncode == 1 and "not found" in one_error_line(r)
    for x in (d, plain):
        server.request("DELETE", f"/api/v1/devboxes/{x['id']}")


def test_usage_errors_are_exit_64(server):
    r = devbox(server, "list", env={"DEVBOX_PROVIDER_TOKEN": ""})
    assert r.returncode == 64 and "DEVBOX_PROVIDER_TOKEN" in one_error_line(r)
    r = devbox(server, "list", "--url", "ftp://example.com")
    assert r.returncode == 64 and "ftp://example.com" in one_error_line(r)
    r = devbox(server, "logs", "dbx_x", "--json", "--follow")
    assert r.returncode == 64
    r = devbox(server, "create", "x", "--env", "UNSET_VARIABLE_FOR_TEST")
    assert r.returncode == 64 and "UNSET_VARIABLE_FOR_TEST" in one_error_line(r)
    r = devbox(server, "--help")
    assert r.returncode == 0 and "create" in r.stdout and "ssh-key" in r.stdout
    r = devbox(server, "create", "--help")
    assert "Exit codes" in r.stdout and "ANTHROPIC_API_KEY" in r.stdout


# -- AI tokens come only from the environment -------------------------------------------------

def test_claude_and_codex_tokens_come_from_the_environment(server):
    r = devbox(server, "create", "x", "--claude")
    assert r.returncode == 64 and "ANTHROPIC_API_KEY" in one_error_line(r)
    r = devbox(server, "create", "x", "--codex")
    assert r.returncode == 64 and "OPENAI_API_KEY" in one_error_line(r)
    assert all(b["name"] != "x" for b in server.request("GET", "/api/v1/devboxes").json()["devboxes"])

    claude = "sk-ant-cli-" + secrets.token_hex(16)
    codex = "sk-codex-cli-" + secrets.token_hex(16)
    args = ["create", "cli-tokens", "--claude", "--codex", "--wait", "--json"]
    r = devbox(server, *args, env={"ANTHROPIC_API_KEY": claude, "OPENAI_API_KEY": codex})
    assert r.returncode == 0, r.stderr
    assert not any(claude in a or codex in a for a in [BIN, *args])
    for text in (r.stdout, r.stderr, server.log()):
        assert claude not in text and codex not in text
    d = json.loads(r.stdout)
    assert d["credential_profile"] == {"inject_claude_token": True, "inject_codex_token": True}
    inject = next(o for o in server.operations(d["id"]) if o["name"] == "inject_credentials")
    assert inject["status"] == "succeeded"
    assert "ANTHROPIC_API_KEY" in inject["output"] and "OPENAI_API_KEY" in inject["output"]
    assert claude not in inject["output"]
    r = devbox(server, "logs", d["id"])
    assert claude not in r.stdout and codex not in r.stdout
    assert devbox(server, "delete", d["id"]).returncode == 0


# -- ssh-key and ssh ---------------------------------------------------------------------------

def test_ssh_key_and_ssh_with_the_session_details(server):
    tmp = tempfile.mkdtemp()
    key = keygen(tmp)
    pub = open(key + ".pub").read()
    fp = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", key + ".pub"], capture_output=True, text=True,
                        check=True).stdout.split()[1]

    r = devbox(server, "ssh-key", "set", key)  # the private key: refused locally, never sent
    assert r.returncode == 64 and "PRIVATE" in one_error_line(r)
    r = devbox(server, "ssh-key", "set", "-", input=pub)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"SSH key set: ssh-ed25519 {fp}"
    r = devbox(server, "ssh-key", "set", key + ".pub")
    assert r.returncode == 0 and fp in r.stdout
    r = devbox(server, "ssh-key", "set", "-", input="ssh-ed25519 garbage")
    assert r.returncode == 1 and "(field: public_key)" in one_error_line(r)

    r = devbox(server, "create", "cli-ssh", "--wait", "--json")
    assert r.returncode == 0, r.stderr
    devbox_id = json.loads(r.stdout)["id"]

    # A stand-in `ssh` records its arguments and exits 7: the CLI must pass the details and the code through.
    bindir = os.path.join(tmp, "bin")
    os.makedirs(bindir)
    args_file = os.path.join(tmp, "ssh-args")
    with open(os.path.join(bindir, "ssh"), "w") as f:
        f.write(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {args_file}\nexit 7\n")
    os.chmod(os.path.join(bindir, "ssh"), 0o755)
    path = bindir + ":" + os.environ.get("PATH", "")
    r = devbox(server, "ssh", devbox_id, "--", "echo", "hi there", env={"PATH": path})
    assert r.returncode == 7, r.stderr
    argv = open(args_file).read().splitlines()
    i = argv.index("-p")
    assert argv[i + 1] == str(server.ssh_port)
    assert argv[argv.index("-o") + 1] == "StrictHostKeyChecking=accept-new"
    target = argv[argv.index("--") + 1]
    user, host = target.split("@")
    assert user.startswith("ses_") and host == "127.0.0.1"
    assert argv[argv.index("--") + 2:] == ["echo", "hi there"]
    # The session lived only as long as ssh.
    sessions = server.request("GET", f"/api/v1/devboxes/{devbox_id}/access/sessions").json()["sessions"]
    assert user not in [s["session_id"] for s in sessions]

    r = devbox(server, "ssh", devbox_id, "-i", key, env={"PATH": path})
    assert r.returncode == 7
    argv = open(args_file).read().splitlines()
    assert argv[argv.index("-i") + 1] == key and argv[-1].startswith("ses_")

    r = devbox(server, "ssh", devbox_id, env={"PATH": tmp})  # no ssh on PATH
    assert r.returncode == 127 and "ssh" in one_error_line(r)

    r = devbox(server, "ssh-key", "rm")
    assert r.returncode == 0 and r.stdout.strip() == "SSH key removed"
    r = devbox(server, "ssh", devbox_id, env={"PATH": path})
    assert r.returncode == 1
    assert "devbox ssh-key set" in one_error_line(r)
    assert devbox(server, "delete", devbox_id).returncode == 0


# -- github ---------------------------------------------------------------------------------------

def test_github_status(server):
    r = devbox(server, "github", "status", "--json")
    if r.returncode == 0:
        assert json.loads(r.stdout) is None  # nobody is connected on a fresh server
        r = devbox(server, "github", "status")
        assert r.returncode == 0 and r.stdout.strip() == "GitHub: not connected"
    else:  # the integration is not built in yet: still one clear line
        assert r.returncode == 1
        one_error_line(r)


def test_list_hides_destroyed_devboxes_unless_all(server):
    gone = server.create({"name": "cli-gone"})
    server.wait_state(gone["id"])
    server.request("DELETE", f"/api/v1/devboxes/{gone['id']}")
    live = server.create({"name": "cli-live"})
    for args in (("list",), ("list", "--json")):
        r = devbox(server, *args)
        assert r.returncode == 0, r.stderr
        assert live["id"] in r.stdout and gone["id"] not in r.stdout, args
    for args in (("list", "--all"), ("list", "--all", "--json")):
        r = devbox(server, *args)
        assert r.returncode == 0, r.stderr
        assert live["id"] in r.stdout and gone["id"] in r.stdout, args
    server.request("DELETE", f"/api/v1/devboxes/{live['id']}")
