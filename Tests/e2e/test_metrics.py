"""Issue 24: Prometheus metrics (GET /metrics on the API behind the provider token, and
DEVBOX_METRICS_ADDR without auth), parsed with prometheus_client's parser and checked against
what the test did; and per-devbox usage (GET /api/v1/devboxes/:id/stats, the CLI, MCP)."""
import json
import os
import re
import subprocess
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from devbox_harness import BIN, Server, free_port

MODERN = "2026-07-28"


@pytest.fixture(scope="module")
def ms():
    port = free_port()
    # The host's masked root: these tests need no image (and no image build at start). A small
    # warm pool: a stop destroys the pool's boxes, and 20 of them outlast the harness's wait
    # for the stop on a loaded machine.
    s = Server(env={"DEVBOX_METRICS_ADDR": f"127.0.0.1:{port}", "DEVBOX_BASE_IMAGE": "host", "DEVBOX_WARM_POOL": "2"})
    s.metrics_url = f"http://127.0.0.1:{port}/metrics"
    s.start()
    yield s
    s.close()


def scrape(s: Server) -> dict:
    """Every sample as {(name, frozenset(labels)): value}, via the real text-format parser."""
    r = s.request("GET", "/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def families(s: Server) -> dict:
    return {f.name: f for f in text_string_to_metric_families(s.request("GET", "/metrics").text)}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: dict, after: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_metrics_need_the_provider_token_on_the_api_and_nothing_on_their_own_address(ms):
    assert requests.get(ms.base + "/metrics", timeout=10).status_code == 401
    assert requests.get(ms.base + "/metrics", headers={"X-Provider-Token": "dbx_pt_wrong"}, timeout=10).status_code == 401
    r = requests.get(ms.metrics_url, timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(r.text)}
    assert {"devbox_http_requests", "devbox_devboxes", "devbox_database_size_bytes"} <= names
    # The separate listener serves the metrics and nothing else.
    other = ms.metrics_url.replace("/metrics", "/api/v1/devboxes")
    assert requests.get(other, timeout=10).status_code == 404
    # The 401s were counted under their route (a pattern, not a raw path).
    samples = scrape(ms)
    assert value(samples, "devbox_http_requests_total", method="GET", route="/metrics", status="401") >= 2


def test_names_units_and_help_follow_prometheus_conventions(ms):
    fams = families(ms)
    assert fams, "no metrics"
    for name, f in fams.items():
        assert name.startswith("devbox_"), name
        assert f.documentation, f"{name} has no HELP"
        if f.type == "counter":
            # the parser strips _total from a counter family's name; its samples carry it
            assert all(s.name.endswith("_total") for s in f.samples), name
        if f.type == "histogram":
            assert name.endswith("_seconds"), name
        if "bytes" in name:
            assert name.endswith("_bytes"), name
    assert fams["devbox_http_request_duration_seconds"].type == "histogram"
    assert fams["devbox_devboxes"].type == "gauge"
    assert fams["devbox_data_dir_free_bytes"].samples[0].value > 0
    assert fams["devbox_database_size_bytes"].samples[0].value > 0


def test_counts_follow_the_actions_taken(ms):
    before = scrape(ms)
    ids = [ms.create({"name": f"m{i}"})["id"] for i in range(3)]
    for i in ids:
        assert ms.wait_state(i)["state"] == "ready"
    missing = ms.request("GET", "/api/v1/devboxes/dbx_nosuchbox")
    assert missing.status_code == 404
    failing = ms.create({"name": "m-fail", "setup_commands": ["exit 3"]})["id"]
    assert ms.wait_state(failing)["state"] == "failed"
    after = scrape(ms)
    assert delta(before, after, "devbox_http_requests_total", method="POST", route="/api/v1/devboxes", status="202") == 4
    assert delta(before, after, "devbox_http_requests_total", method="GET", route="/api/v1/devboxes/{id}", status="404") == 1
    assert delta(before, after, "devbox_http_request_duration_seconds_count",
                 method="POST", route="/api/v1/devboxes", status="202") == 4
    # Devboxes by state: three more ready, one more failed.
    assert delta(before, after, "devbox_devboxes", state="ready") == 3
    assert delta(before, after, "devbox_devboxes", state="failed") == 1
    # Every create ran `provision` once (from the pool or cold); the setup step ran once and failed.
    assert delta(before, after, "devbox_provision_step_duration_seconds_count", step="provision") == 4
    assert delta(before, after, "devbox_provision_step_duration_seconds_count", step="run_setup_commands") == 1
    assert delta(before, after, "devbox_provisioning_failures_total", step="run_setup_commands") == 1
    assert delta(before, after, "devbox_create_to_ready_seconds_count") == 3
    assert delta(before, after, "devbox_warm_pool_hits_total") + delta(before, after, "devbox_warm_pool_misses_total") == 4
    for i in ids + [failing]:
        assert ms.request("DELETE", f"/api/v1/devboxes/{i}").status_code == 204
    gone = scrape(ms)
    assert delta(after, gone, "devbox_devboxes", state="ready") == -3
    assert delta(after, gone, "devbox_devboxes", state="destroyed") == 4


def test_label_sets_stay_bounded(ms):
    """Devbox ids, raw paths and invented methods never become labels."""
    a = ms.create({"name": "card-a"})["id"]
    ms.wait_state(a)
    ms.request("GET", f"/api/v1/devboxes/{a}/operations")
    ms.request("GET", "/api/v1/devboxes/dbx_unknown1")
    ms.request("GET", "/no/such/path/1")
    requests.request("PROPFIND", ms.base + "/api/v1/devboxes", headers=ms.headers(), timeout=10)
    first = {k for k in scrape(ms) if k[0].startswith("devbox_http_requests")}
    b = ms.create({"name": "card-b"})["id"]
    ms.wait_state(b)
    ms.request("GET", f"/api/v1/devboxes/{b}/operations")
    ms.request("GET", "/api/v1/devboxes/dbx_unknown2")
    ms.request("GET", "/no/such/path/2")
    requests.request("PURGE", ms.base + "/api/v1/devboxes", headers=ms.headers(), timeout=10)
    second = scrape(ms)
    series = {k for k in second if k[0].startswith("devbox_http_requests")}
    assert series == first, f"new series: {series - first}"
    text = ms.request("GET", "/metrics").text
    assert a not in text and b not in text and "unknown1" not in text and "PROPFIND" not in text
    assert value(second, "devbox_http_requests_total", method="GET", route="unmatched", status="404") >= 2
    assert any(k[0] == "devbox_http_requests_total" and ("method", "OTHER") in k[1] for k in second), second
    for i in (a, b):
        ms.request("DELETE", f"/api/v1/devboxes/{i}")


def test_mcp_calls_are_counted_by_tool_and_error(ms):
    before = scrape(ms)
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    h = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
         "MCP-Protocol-Version": MODERN, "X-Provider-Token": ms.token, "Mcp-Method": "tools/call"}

    def call(i, name, args):
        body = {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"_meta": meta, "name": name, "arguments": args}}
        return requests.post(ms.base + "/mcp", data=json.dumps(body), headers={**h, "Mcp-Name": name}, timeout=30)

    assert call(1, "list_devboxes", {}).status_code == 200
    assert call(2, "get_devbox", {"devbox_id": "dbx_nope"}).status_code == 200  # a tool error result
    call(3, "no_such_tool_xyz", {})
    after = scrape(ms)
    assert delta(before, after, "devbox_mcp_tool_calls_total", tool="list_devboxes", error="none") == 1
    assert delta(before, after, "devbox_mcp_tool_calls_total", tool="get_devbox", error="tool_error") == 1
    assert delta(before, after, "devbox_mcp_tool_calls_total", tool="unknown", error="invalid_params") == 1
    assert "no_such_tool_xyz" not in ms.request("GET", "/metrics").text


def test_ssh_connections_are_counted(ms):
    import socket
    before = scrape(ms)
    with socket.create_connection(("127.0.0.1", ms.ssh_port), timeout=10) as c:
        c.recv(64)  # the server's identification line
        during = scrape(ms)
        assert value(during, "devbox_ssh_connections") >= 1
    assert delta(before, during, "devbox_ssh_connections_total") >= 1


# -- per-devbox usage -------------------------------------------------------------------

def stats(s: Server, devbox_id: str) -> dict:
    r = s.request("GET", f"/api/v1/devboxes/{devbox_id}/stats")
    assert r.status_code == 200, r.text
    return r.json()


def run(s: Server, devbox_id: str, command: str, timeout: int = 60) -> dict:
    r = s.request("POST", f"/api/v1/devboxes/{devbox_id}/exec",
                  json_body={"command": command, "timeout_seconds": timeout}, timeout=timeout + 30)
    assert r.status_code == 200, r.text
    return r.json()


KEYS = {"devbox_id", "state", "running", "sampled_at", "cpu_seconds", "memory_bytes", "memory_peak_bytes",
        "memory_limit_bytes", "pids", "disk_used_bytes", "disk_used_complete", "network_in_bytes", "network_out_bytes"}


def test_stats_show_a_cpu_burner_a_memory_hog_disk_and_network(ms):
    d = ms.create({"name": "usage"})
    assert ms.wait_state(d["id"])["state"] == "ready"
    first = stats(ms, d["id"])
    assert set(first) == KEYS
    assert first["running"] is True and first["state"] == "ready"
    assert first["pids"] >= 1 and first["memory_bytes"] > 0
    assert first["memory_limit_bytes"] == 1024 << 20  # the small plan
    # A CPU burner: a fixed amount of work (a million shell additions, about a second of CPU),
    # so the figure does not depend on how busy the machine's two cores are.
    t0 = time.time()
    run(ms, d["id"], "i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done")
    burned = stats(ms, d["id"])
    assert burned["cpu_seconds"] - (first["cpu_seconds"] or 0) >= 0.3, (first, burned, time.time() - t0)
    # A memory hog: `tail` holds one 96 MiB line.
    run(ms, d["id"], "head -c 100663296 /dev/zero | tail -n 1 | wc -c")
    hog = stats(ms, d["id"])
    assert hog["memory_peak_bytes"] >= 64 << 20, hog
    # 8 MiB written to the workspace show on disk.
    run(ms, d["id"], "head -c 8388608 /dev/urandom > /workspace/blob && sync")
    disk = stats(ms, d["id"])
    assert disk["disk_used_bytes"] - first["disk_used_bytes"] >= 7 << 20, (first, disk)
    assert disk["disk_used_complete"] is True
    # Its own network: the host end's counters, which move when the box sends (a DNS query to its resolver).
    run(ms, d["id"], "getent hosts example.invalid; true")
    net = stats(ms, d["id"])
    assert isinstance(net["network_in_bytes"], int) and isinstance(net["network_out_bytes"], int)
    assert net["network_out_bytes"] > (first["network_out_bytes"] or 0)
    # Stopped: nothing runs, nothing to read in cgroups; the disk is still there.
    assert ms.request("POST", f"/api/v1/devboxes/{d['id']}/stop").status_code == 200
    stopped = stats(ms, d["id"])
    assert stopped["state"] == "stopped" and stopped["running"] is False
    assert stopped["cpu_seconds"] is None and stopped["memory_bytes"] is None and stopped["pids"] is None
    assert stopped["disk_used_bytes"] >= 8 << 20
    # The CLI shows the same figures.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVBOX_")}
    env.update({"DEVBOX_URL": ms.base, "DEVBOX_PROVIDER_TOKEN": ms.token})
    out = subprocess.run([BIN, "stats", d["id"]], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert re.search(r"state:\s+stopped", out.stdout) and re.search(r"disk:\s+\d", out.stdout), out.stdout
    j = subprocess.run([BIN, "stats", d["id"], "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert json.loads(j.stdout)["devbox_id"] == d["id"]
    # Destroyed: 200 with nothing measured.
    assert ms.request("DELETE", f"/api/v1/devboxes/{d['id']}").status_code == 204
    gone = stats(ms, d["id"])
    assert gone["state"] == "destroyed" and gone["running"] is False and gone["disk_used_bytes"] == 0


def test_stats_of_an_unknown_or_another_users_devbox_is_404(ms):
    r = ms.request("GET", "/api/v1/devboxes/dbx_nosuch/stats")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert requests.get(ms.base + "/api/v1/devboxes/dbx_nosuch/stats", timeout=10).status_code == 401
    d = ms.create({"name": "mine"})
    other = ms.create_token("stats-other")
    deadline = time.time() + 10
    while True:  # a new token reaches the server's token cache within ~2 s
        r = ms.request("GET", f"/api/v1/devboxes/{d['id']}/stats", token=other)
        if r.status_code != 401 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 404
    ms.request("DELETE", f"/api/v1/devboxes/{d['id']}")


def test_stats_through_mcp(ms):
    d = ms.create({"name": "mcp-stats"})
    ms.wait_state(d["id"])
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"_meta": meta, "name": "get_devbox_stats", "arguments": {"devbox_id": d["id"]}}}
    r = requests.post(ms.base + "/mcp", data=json.dumps(body), timeout=30, headers={
        "Accept": "application/json, text/event-stream", "Content-Type": "application/json",
        "MCP-Protocol-Version": MODERN, "X-Provider-Token": ms.token, "Mcp-Method": "tools/call",
        "Mcp-Name": "get_devbox_stats"})
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert not result.get("isError"), result
    s = result["structuredContent"]
    assert s["devbox_id"] == d["id"] and s["running"] is True and s["memory_bytes"] > 0 and s["pids"] >= 1
    ms.request("DELETE", f"/api/v1/devboxes/{d['id']}")


def test_dashboard_devbox_page_charts_usage(ms):
    """The devbox page's Resources section in a real headless Chromium: figures from the stats
    endpoint, and the SVG chart gains points as the page samples (every 5 s)."""
    from dashboard_browser import Browser
    d = ms.create({"name": "dash-usage"})
    assert ms.wait_state(d["id"])["state"] == "ready"
    b = Browser()
    try:
        b.get(ms.base + "/login")
        b.type("#provider_token", ms.token)
        b.submit("#sign-in")
        b.get(ms.base + f"/devboxes/{d['id']}")
        b.wait_for("#resources")
        b.wait(20).until(lambda _: "of 1.0 GiB" in b.find('[data-stat="memory"]').text)  # "184.0 KiB (peak …) of 1.0 GiB"
        assert re.match(r"[\d.]+ (B|KiB|MiB)", b.find('[data-stat="memory"]').text)
        assert int(b.find('[data-stat="pids"]').text) >= 1
        # Burn CPU (a fixed amount of work, ~2 s of CPU) while the page samples: once two more
        # samples came, an interval holds the burn and the CPU line rises off the floor.
        before = int(b.find('[data-stat="samples"]').text)
        run(ms, d["id"], "i=0; while [ $i -lt 2000000 ]; do i=$((i+1)); done")
        b.wait(30).until(lambda _: int(b.find('[data-stat="samples"]').text) >= before + 2)
        points = b.find('[data-series="cpu"]').get_attribute("points").split()
        assert len(points) >= 2
        ys = [float(p.split(",")[1]) for p in points]
        assert min(ys) < 110, ys  # some interval above ~8 % of a core (y 119 is 0 %, 4 is 100 %)
        assert b.find('[data-series="memory"]').get_attribute("points")
        b.shot("devbox-resources")
        # The JSON the page reads answers only the signed-in user's devboxes.
        assert requests.get(ms.base + f"/dashboard/api/devboxes/{d['id']}/stats", timeout=10).status_code == 401
    finally:
        b.close()
        ms.request("DELETE", f"/api/v1/devboxes/{d['id']}")
