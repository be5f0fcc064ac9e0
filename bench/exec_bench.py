#!/usr/bin/env python3
"""Exec round trip of `true` (issue 9): REST `POST /exec`, MCP `run_command` over HTTP `/mcp`
(2026-07-28 era, raw JSON-RPC on one keep-alive connection) and a bare `crun exec <id> true` on
the same box, interleaved round-robin in one run so machine load hits all three alike.
Prints p50/p95 per path and the ratios to crun; `--json` for machine-readable output.
Goal: REST and MCP p50 within 2x of crun's.
"""
import argparse
import http.client
import json
import statistics
import subprocess
import time
import urllib.parse

META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}


def pct(samples, q):
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--box", required=True)
    p.add_argument("--container", required=True)
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    u = urllib.parse.urlsplit(a.base)
    rest = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    mcp = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    auth = {"X-Provider-Token": a.token, "Content-Type": "application/json"}

    def via_rest():
        rest.request("POST", f"/api/v1/devboxes/{a.box}/exec", body=b'{"command":["true"]}', headers=auth)
        r = rest.getresponse()
        body = json.loads(r.read())
        assert r.status == 200 and body["exit_code"] == 0, body

    call_id = [0]
    mcp_headers = {**auth, "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2026-07-28",
                   "Mcp-Method": "tools/call", "Mcp-Name": "run_command"}

    def via_mcp():
        call_id[0] += 1
        msg = {"jsonrpc": "2.0", "id": call_id[0], "method": "tools/call",
               "params": {"name": "run_command", "arguments": {"devbox_id": a.box, "command": ["true"]}, "_meta": META}}
        mcp.request("POST", "/mcp", body=json.dumps(msg), headers=mcp_headers)
        r = mcp.getresponse()
        raw = r.read()
        if r.getheader("Content-Type", "").startswith("text/event-stream"):
            raw = [l[5:] for l in raw.decode().splitlines() if l.startswith("data:")][-1]
        m = json.loads(raw)
        assert r.status == 200 and m["result"]["structuredContent"]["exit_code"] == 0, m

    def via_crun():
        r = subprocess.run(["crun", "exec", a.container, "true"], stdin=subprocess.DEVNULL)
        assert r.returncode == 0

    paths = {"crun": via_crun, "rest": via_rest, "mcp": via_mcp}
    for f in paths.values():  # warm-up, not timed
        for _ in range(10):
            f()
    samples = {k: [] for k in paths}
    for i in range(a.n):
        order = list(paths.items())
        order = order[i % 3:] + order[:i % 3]  # rotate who goes first
        for name, f in order:
            t0 = time.perf_counter()
            f()
            samples[name].append((time.perf_counter() - t0) * 1000)
    out = {k: {"n": len(v), "p50_ms": round(statistics.median(v), 2), "p95_ms": round(pct(v, 95), 2),
               "mean_ms": round(statistics.fmean(v), 2)} for k, v in samples.items()}
    base = out["crun"]["p50_ms"]
    for k in ("rest", "mcp"):
        out[k]["p50_ratio_to_crun"] = round(out[k]["p50_ms"] / base, 2)
        out[k]["p95_ratio_to_crun"] = round(out[k]["p95_ms"] / out["crun"]["p95_ms"], 2)
    if a.json:
        print(json.dumps(out, indent=2))
        return
    print(f"exec round trip of `true`, n={a.n} each, interleaved")
    print(f"{'path':<6} {'p50 ms':>8} {'p95 ms':>8} {'p50/crun':>9} {'p95/crun':>9}")
    for k in ("crun", "rest", "mcp"):
        o = out[k]
        print(f"{k:<6} {o['p50_ms']:>8} {o['p95_ms']:>8} {o.get('p50_ratio_to_crun', 1.0):>9} {o.get('p95_ratio_to_crun', 1.0):>9}")
    ok = all(out[k]["p50_ratio_to_crun"] <= 2.0 for k in ("rest", "mcp"))
    print("goal (p50 within 2x of bare crun exec):", "met" if ok else "MISSED")


if __name__ == "__main__":
    main()
