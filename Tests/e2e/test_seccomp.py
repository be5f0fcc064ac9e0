"""The box's seccomp profile is an allow list (Sources/Sandbox/Seccomp.swift): a syscall it
does not name answers ENOSYS, one it refuses on purpose EPERM; everyday dev work still runs.

The attacker is a static C probe (built on the host, so it runs whatever the box's image
holds) that calls each syscall directly and prints the errno it got."""
import json
import os
import shutil
import subprocess

import pytest

PROBE_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int first = 1;
static void report(const char *name, long r) {
    const char *what = r >= 0 ? "ok" : errno == EPERM ? "EPERM" : errno == ENOSYS ? "ENOSYS" : strerrorname_np(errno);
    printf("%s\"%s\": \"%s\"", first ? "{" : ", ", name, what ? what : "?");
    first = 0;
}

int main(void) {
    errno = 0; report("keyctl", syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -4 /* user keyring */, 0));
    errno = 0; report("add_key", syscall(SYS_add_key, "user", "k", "v", 1, -4));
    errno = 0; report("request_key", syscall(SYS_request_key, "user", "k", 0, 0));
    errno = 0; report("kexec_load", syscall(SYS_kexec_load, 0, 0, 0, 0));
    errno = 0; report("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, 0, 0));
    errno = 0; report("bpf", syscall(SYS_bpf, 0, 0, 0));
    errno = 0; report("perf_event_open", syscall(SYS_perf_event_open, 0, 0, -1, -1, 0));
    errno = 0; report("userfaultfd", syscall(SYS_userfaultfd, 0));
    errno = 0; report("io_uring_setup", syscall(SYS_io_uring_setup, 1, 0));
    errno = 0; report("unshare_user", syscall(SYS_unshare, CLONE_NEWUSER));
    errno = 0; report("unshare_mount", syscall(SYS_unshare, CLONE_NEWNS));
    errno = 0; report("setns", syscall(SYS_setns, 0, 0));
    errno = 0; report("mount", syscall(SYS_mount, "none", "/mnt", "tmpfs", 0, 0));
    errno = 0; report("init_module", syscall(SYS_init_module, 0, 0, ""));
    errno = 0; report("swapon", syscall(SYS_swapon, "/nonexistent", 0));
    errno = 0; report("reboot", syscall(SYS_reboot, 0, 0, 0, 0));
    errno = 0; report("clock_settime", syscall(SYS_clock_settime, 0, 0));
    errno = 0; report("clone3", syscall(SYS_clone3, 0, 0));
    errno = 0; report("raw_999", syscall(999, 0, 0, 0));
    errno = 0; report("personality_no_aslr", syscall(SYS_personality, 0x0040000));
    /* clone with CLONE_NEWUSER: refused before a child exists (if one did, it exits at once). */
    errno = 0;
    long c = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (c == 0) _exit(0);
    if (c > 0) waitpid(c, 0, 0);
    report("clone_newuser", c);
    errno = 0; long v = socket(40 /* AF_VSOCK */, SOCK_STREAM, 0); report("socket_vsock", v);
    /* What must keep working. */
    errno = 0; long t = socket(AF_INET, SOCK_STREAM, 0); report("socket_inet", t);
    errno = 0; pid_t p = fork(); if (p == 0) _exit(0); if (p > 0) waitpid(p, 0, 0); report("fork", p);
    errno = 0; report("personality_query", syscall(SYS_personality, 0xffffffff));
    /* The i386 ABI (int 0x80, getpid = 20): not an architecture of the filter, the thread dies. */
    pid_t k = fork();
    if (k == 0) { long r; __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory"); _exit(r > 0 ? 0 : 3); }
    int st = 0; waitpid(k, &st, 0);
    printf(", \"int80\": \"%s\"", WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS ? "SIGSYS" : WIFEXITED(st) ? "exited" : "other");
    printf("}\n");
    return 0;
}
"""

REFUSED_EPERM = ["keyctl", "add_key", "request_key", "kexec_load", "open_by_handle_at", "bpf", "perf_event_open",
                 "userfaultfd", "io_uring_setup", "unshare_user", "unshare_mount", "setns", "mount", "init_module",
                 "swapon", "reboot", "clock_settime", "clone_newuser", "socket_vsock"]
UNKNOWN_ENOSYS = ["clone3", "raw_999", "personality_no_aslr"]


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler on the test machine to build the static syscall probe")
    d = tmp_path_factory.mktemp("seccomp")
    src = d / "probe.c"
    src.write_text(PROBE_C)
    out = d / "probe"
    (d / "t.c").write_text("int main(void) { return 0; }\n")
    if subprocess.run([cc, "-static", "-o", str(d / "t"), str(d / "t.c")], capture_output=True).returncode != 0:
        pytest.skip("the test machine cannot link static binaries (no libc.a)")
    r = subprocess.run([cc, "-static", "-O1", "-o", str(out), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out.read_bytes()


@pytest.fixture(scope="module")
def box(server):
    d = server.wait_state(server.create({"name": "seccomp"})["id"])
    assert d["state"] == "ready", d
    yield d["id"]
    server.request("DELETE", f"/api/v1/devboxes/{d['id']}")


def run(server, box_id, command, timeout=120):
    r = server.request("POST", f"/api/v1/devboxes/{box_id}/exec",
                       json_body={"command": command, "timeout_seconds": timeout})
    assert r.status_code == 200, r.text
    return r.json()


def test_refused_and_unknown_syscalls_fail_in_the_box(server, box, probe):
    r = server.request("PUT", f"/api/v1/devboxes/{box}/files?path=%2Fworkspace%2Fprobe&mode=755", data=probe)
    assert r.status_code in (200, 201, 204), r.text
    out = run(server, box, "/workspace/probe")
    assert out["exit_code"] == 0, out
    got = json.loads(out["stdout"])
    for name in REFUSED_EPERM:
        assert got[name] == "EPERM", (name, got)
    for name in UNKNOWN_ENOSYS:
        assert got[name] == "ENOSYS", (name, got)
    for name in ["socket_inet", "fork", "personality_query"]:
        assert got[name] == "ok", (name, got)
    assert got["int80"] == "SIGSYS", got


def test_refusals_seen_through_the_tools(server, box):
    r = run(server, box, "unshare -U -r id -u; echo rc=$?")
    assert "rc=0" not in r["stdout"], r
    r = run(server, box, "mount -t tmpfs none /mnt 2>&1; echo rc=$?")
    assert "rc=0" not in r["stdout"], r


def test_everyday_dev_work_still_runs(server, box):
    script = r"""
set -e
cd /workspace && rm -rf proj && mkdir proj && cd proj
git init -q . && git config user.email t@example.com && git config user.name t
echo hello > a.txt && git add a.txt && git commit -qm first && git log --oneline | wc -l
tar czf ../a.tgz . && mkdir -p ../untar && tar xzf ../a.tgz -C ../untar && cat ../untar/a.txt
sh -c 'echo sub $$ >/dev/null; (sleep 0.1 &) ; wait' && echo shells
if command -v bash >/dev/null; then bash -c 'coproc { cat; }; echo hi >&"${COPROC[1]}"; exec {COPROC[1]}>&-; read -r l <&"${COPROC[0]}"; echo "$l"'; else echo hi; fi
if command -v python3 >/dev/null; then
  python3 -c 'import threading, subprocess, socket, tempfile, os, select
t = threading.Thread(target=lambda: None); t.start(); t.join()
assert subprocess.run(["true"]).returncode == 0
a, b = socket.socketpair(); a.send(b"x"); assert b.recv(1) == b"x"
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); s.close()
e = select.epoll(); e.close()
with tempfile.NamedTemporaryFile() as f: os.fsync(f.fileno())
print("python")'
else echo python; fi
if command -v apt-get >/dev/null; then apt-get --help >/dev/null && echo apt; else echo apt; fi
if command -v dpkg >/dev/null; then dpkg --version >/dev/null && echo dpkg; else echo dpkg; fi
if command -v curl >/dev/null; then curl --version >/dev/null && echo curl; else echo curl; fi
if [ -x /usr/lib/openssh/sftp-server ]; then echo | /usr/lib/openssh/sftp-server >/dev/null 2>&1 || true; echo sftp; else echo sftp; fi
if command -v cc >/dev/null; then
  printf '#include <stdio.h>\n#include <pthread.h>\nstatic void *f(void *a) { return a; }\nint main(void) { pthread_t t; pthread_create(&t, 0, f, 0); pthread_join(t, 0); puts("compiled"); return 0; }\n' > m.c
  cc -pthread -o m m.c && ./m
else echo compiled; fi
if command -v strace >/dev/null; then strace -f -o /dev/null true && echo ptrace; else echo ptrace; fi
"""
    r = run(server, box, script, timeout=180)
    assert r["exit_code"] == 0, r
    assert r["stdout"].split() == ["1", "hello", "shells", "hi", "python", "apt", "dpkg", "curl", "sftp",
                                   "compiled", "ptrace"], r
