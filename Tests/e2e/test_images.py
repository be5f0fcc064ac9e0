"""Issue 18: boxes run on a real Debian image from the machine-wide image store by default;
more images by `devbox image import` (OCI layout, docker save), chosen per create."""
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from urllib.parse import quote

import pytest
import requests

from devbox_harness import BIN, Server

STORE = os.environ.get("DEVBOX_IMAGE_DIR") or "/var/lib/devbox/images"


def cli(*args, check=True, timeout=900):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture(scope="module")
def store_ready():
    """The default image, built once per machine (a no-op when `make test` built it)."""
    t0 = time.time()
    p = cli("image", "build", "--if-missing")
    print(f"image build --if-missing: {time.time() - t0:.1f} s")
    lowers = p.stdout.strip().split(":")
    assert lowers and all(l.startswith(STORE + "/layers/") for l in lowers), p.stdout
    return lowers


@pytest.fixture(scope="module")
def server(store_ready):
    s = Server().start()
    yield s
    s.close()


def ready_box(s, body):
    d = s.wait_state(s.create(body)["id"])
    assert d["state"] == "ready", s.operations(d["id"])
    return d


def run(s, box, cmd, timeout=60):
    r = s.request("POST", f"/api/v1/devboxes/{box}/exec", json_body={"command": ["/bin/sh", "-c", cmd], "timeout_seconds": timeout},
                  timeout=timeout + 30)
    assert r.status_code == 200, r.text
    return r.json()


def read_file(s, box, path):
    return s.request("GET", f"/api/v1/devboxes/{box}/files?path={quote(path, safe='')}")


def test_default_box_is_debian_and_sees_nothing_of_the_host(server):
    marker = f"/devbox-e2e-marker-{uuid.uuid4().hex[:8]}"
    os.mkdir(marker)
    try:
        d = ready_box(server, {"name": "img-default"})
        assert d["image"] == "debian"
        out = run(server, d["id"], "ls -a /; echo ---; cat /etc/debian_version; echo ---; cat /etc/machine-id; echo ---;"
                                    " ls -A /usr/local/bin /opt; echo ---; test -s /var/lib/dpkg/status && echo dpkg;"
                                    " for t in bash git curl python3 ps ip; do command -v $t; done; test -x /usr/lib/openssh/sftp-server && echo sftp")
        assert out["exit_code"] == 0, out
        root, version, machine_id, local, tools = out["stdout"].split("---\n")
        assert marker.lstrip("/") not in root.split()
        for host_only in ("work", "farm", ".devbox-image"):
            assert host_only not in root.split(), root
        assert version.startswith("12."), version
        host_id = open("/etc/machine-id").read().strip()
        assert host_id not in machine_id
        # /usr/local and /opt are the image's (empty), not the host's toolchain and tools
        assert local.split() == ["/opt:", "/usr/local/bin:"] or local.strip().split() == ["/opt:", "/usr/local/bin:"], local
        assert "dpkg" in tools and "sftp" in tools
        for tool in ("bash", "git", "curl", "python3", "ps", "ip"):
            assert f"/{tool}\n" in tools, (tool, tools)
        # The image's layers are never written by a box.
        run(server, d["id"], "echo changed > /etc/motd")
        for lower in subprocess.run([BIN, "image", "build", "--if-missing"], capture_output=True, text=True).stdout.strip().split(":"):
            motd = os.path.join(lower, "etc/motd")
            if os.path.exists(motd):
                assert "changed" not in open(motd).read()
        server.request("DELETE", f"/api/v1/devboxes/{d['id']}")
    finally:
        os.rmdir(marker)


def test_the_box_mount_table_names_no_host_path(server):
    """The box's /proc/mounts and mountinfo hold no host path: not the data dir, the box's
    directory, the image store or the host's /tmp (overlay is given its layers by descriptor)."""
    d = ready_box(server, {"name": "img-mounts"})
    out = run(server, d["id"], "cat /proc/mounts /proc/self/mountinfo")
    assert out["exit_code"] == 0, out
    table = out["stdout"]
    assert " / overlay " in table or "overlay / overlay" in table, table
    data = os.path.realpath(server.data_dir)
    for host_path in (data, os.path.dirname(data), "/var/lib/devbox", "/tmp/devbox-e2e"):
        assert host_path not in table, (host_path, table)
    server.request("DELETE", f"/api/v1/devboxes/{d['id']}")


def test_unknown_image_is_a_422_naming_the_field(server):
    r = server.request("POST", "/api/v1/devboxes", json_body={"name": "x", "image": "no-such-image"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "image", r.text
    r = server.request("POST", "/api/v1/devboxes", json_body={"name": "x", "image": "../etc"})
    assert r.status_code == 422 and "image" in r.text


def test_healthz_says_the_default_image_is_ready(server):
    h = requests.get(server.base + "/healthz", timeout=5)
    assert h.status_code == 200
    assert h.json()["image"] == {"name": "debian", "state": "ready"}


def _mirror():
    """The mirror the image was built from (its apt sources): the machine's own."""
    p = subprocess.run([BIN, "image", "list", "--json"], capture_output=True, text=True, check=True)
    src = next(i["source"] for i in json.loads(p.stdout) if i["name"] == "debian")
    return src.split()[-1]


def _host_resolver():
    for line in open("/etc/resolv.conf"):
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            return parts[1]
    return None


def test_apt_get_install_works_in_a_default_box(store_ready):
    mirror = _mirror()
    try:
        requests.head(mirror.rstrip("/") + "/dists/bookworm/Release", timeout=10).raise_for_status()
    except Exception as e:
        pytest.skip(f"the machine's Debian mirror {mirror} is unreachable from here: {e}")
    resolver = _host_resolver()
    if not resolver:
        pytest.skip("no nameserver in the host's /etc/resolv.conf for the boxes' resolver to forward to")
    # The box's resolver forwards to the machine's; apt goes out through the box's normal egress.
    s = Server(env={"DEVBOX_DNS_UPSTREAM": resolver})
    s.start()
    try:
        d = ready_box(s, {"name": "apt"})
        t0 = time.time()
        out = run(s, d["id"], "apt-get update -q >/tmp/u.log 2>&1 || { tail -5 /tmp/u.log; exit 1; };"
                              " DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends hello >/tmp/i.log 2>&1"
                              " || { tail -5 /tmp/i.log; exit 1; }; hello", timeout=600)
        print(f"apt-get update + install hello: {time.time() - t0:.1f} s")
        assert out["exit_code"] == 0, out
        assert "Hello, world!" in out["stdout"]
    finally:
        s.close()


# -- imports ---------------------------------------------------------------------------------------

def _tar(entries):
    """A layer tar: entries are (name, kind, data) with kind file|dir."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                t.addfile(info)
            else:
                info.mode = 0o644
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _layers(tag):
    base = _tar([("etc/", "dir", b""), ("etc/os-release", "file", b"ID=devbox-e2e\n"),
                 ("etc/old/", "dir", b""), ("etc/old/a", "file", b"a"), ("srv/", "dir", b""),
                 ("srv/gone", "file", b"gone"), ("srv/kept", "file", b"kept " + tag.encode())])
    top = _tar([("srv/", "dir", b""), ("srv/.wh.gone", "file", b""), ("etc/", "dir", b""), ("etc/old/", "dir", b""),
                ("etc/old/.wh..wh..opq", "file", b""), ("etc/old/b", "file", b"b"), ("srv/new", "file", b"new")])
    return base, top


def _write_oci(dir_, layers, gzip_top=True):
    blobs = os.path.join(dir_, "blobs", "sha256")
    os.makedirs(blobs)

    def put(data):
        h = hashlib.sha256(data).hexdigest()
        open(os.path.join(blobs, h), "wb").write(data)
        return "sha256:" + h, len(data)

    descs = []
    for i, layer in enumerate(layers):
        data = gzip.compress(layer, mtime=0) if gzip_top and i == len(layers) - 1 else layer
        dg, size = put(data)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if data is not layer else ""),
                      "digest": dg, "size": size})
    cfg, cfg_size = put(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    manifest, msize = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": cfg_size},
                                      "layers": descs}).encode())
    json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest,
                                                  "size": msize, "platform": {"architecture": "amd64", "os": "linux"}}]},
              open(os.path.join(dir_, "index.json"), "w"))
    open(os.path.join(dir_, "oci-layout"), "w").write('{"imageLayoutVersion": "1.0.0"}')


def _write_docker_save(path, layers):
    with tarfile.open(path, "w") as t:
        names = []
        for i, layer in enumerate(layers):
            name = f"{i:064x}/layer.tar"
            info = tarfile.TarInfo(name)
            info.size = len(layer)
            t.addfile(info, io.BytesIO(layer))
            names.append(name)
        m = json.dumps([{"Config": "config.json", "RepoTags": ["e2e:latest"], "Layers": names}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(m)
        t.addfile(info, io.BytesIO(m))


def _check_layered(s, box, tag):
    assert read_file(s, box, "/etc/os-release").content == b"ID=devbox-e2e\n"
    assert read_file(s, box, "/srv/kept").content == b"kept " + tag.encode()
    assert read_file(s, box, "/srv/new").content == b"new"
    assert read_file(s, box, "/srv/gone").status_code == 404          # whited out by the top layer
    assert read_file(s, box, "/etc/old/a").status_code == 404         # opaque directory
    assert read_file(s, box, "/etc/old/b").content == b"b"
    # nothing of the default image or of the host: no shell, no dpkg
    assert read_file(s, box, "/bin/sh").status_code == 404
    assert read_file(s, box, "/var/lib/dpkg/status").status_code == 404


def test_import_oci_and_docker_save_then_create_with_image(server):
    tag = uuid.uuid4().hex[:8]
    oci_name, docker_name = f"e2e-oci-{tag}", f"e2e-docker-{tag}"
    work = tempfile.mkdtemp(prefix="devbox-e2e-img-")
    base, top = _layers(tag)
    try:
        # OCI layout, as a directory and (same layers) as a tar
        oci = os.path.join(work, "oci")
        _write_oci(oci, [base, top])
        p = cli("image", "import", oci_name, oci, check=False)
        assert p.returncode == 0, p.stderr
        assert "2 layer(s)" in p.stdout
        layers_before = set(os.listdir(os.path.join(STORE, "layers")))
        oci_tar = os.path.join(work, "oci.tar")
        with tarfile.open(oci_tar, "w") as t:
            t.add(oci, arcname=".")
        p = cli("image", "import", oci_name + "-tar", oci_tar, check=False)
        assert p.returncode == 0, p.stderr
        assert p.stderr.count("already unpacked") == 2, p.stderr   # layers unpacked once
        assert set(os.listdir(os.path.join(STORE, "layers"))) == layers_before
        # docker save: the top layer uncompressed here, so one layer is new
        dsave = os.path.join(work, "save.tar")
        _write_docker_save(dsave, [base, top])
        p = cli("image", "import", docker_name, dsave, check=False)
        assert p.returncode == 0, p.stderr
        listed = {i["name"]: i for i in json.loads(cli("image", "list", "--json").stdout)}
        assert {oci_name, oci_name + "-tar", docker_name, "debian"} <= set(listed)
        assert listed[oci_name]["layers"][0] == listed[docker_name]["layers"][0]  # the base layer, shared
        # the layers are in canonical ids, owned by root, read-only for boxes
        for lid in listed[docker_name]["layers"]:
            st = os.stat(os.path.join(STORE, "layers", lid, "root", "srv"))
            assert (st.st_uid, st.st_gid) == (0, 0)

        a = ready_box(server, {"name": "img-oci", "image": oci_name})
        b = ready_box(server, {"name": "img-docker", "image": docker_name})
        assert a["image"] == oci_name and server.get(b["id"])["image"] == docker_name
        _check_layered(server, a["id"], tag)
        _check_layered(server, b["id"], tag)
        # writes go to the box's own layer, never into the shared layers
        w = server.request("PUT", f"/api/v1/devboxes/{a['id']}/files?path={quote('/srv/kept', safe='')}", data=b"mine")
        assert w.status_code == 200, w.text
        assert read_file(server, b["id"], "/srv/kept").content == b"kept " + tag.encode()

        # rm is refused while a devbox (running or stopped) uses the image
        r = cli("image", "rm", oci_name, check=False)
        assert r.returncode != 0 and "used by 1 devbox" in r.stderr, r.stderr
        assert server.request("POST", f"/api/v1/devboxes/{a['id']}/stop").status_code in (200, 202)
        server.wait_state(a["id"], states=("stopped",))
        r = cli("image", "rm", oci_name, check=False)
        assert r.returncode != 0 and "used by" in r.stderr, r.stderr
        for box in (a, b):
            assert server.request("DELETE", f"/api/v1/devboxes/{box['id']}").status_code in (200, 202, 204)
            server.wait_state(box["id"], states=("destroyed",))
        for name in (oci_name, oci_name + "-tar", docker_name):
            r = cli("image", "rm", name, check=False)
            assert r.returncode == 0, r.stderr
        assert cli("image", "rm", oci_name, check=False).returncode != 0   # gone
        listed = {i["name"] for i in json.loads(cli("image", "list", "--json").stdout)}
        assert not ({oci_name, docker_name} & listed)
        # their layers went with them (the default image's stay)
        assert not any(l.startswith("sha256-") and l in layers_before for l in os.listdir(os.path.join(STORE, "layers"))
                       if l in {*listed})
    finally:
        for name in (oci_name, oci_name + "-tar", docker_name):
            cli("image", "rm", name, check=False)
        shutil.rmtree(work, ignore_errors=True)


def test_import_refuses_what_is_not_an_image(store_ready, tmp_path):
    (tmp_path / "junk").mkdir()
    p = cli("image", "import", "e2e-junk", str(tmp_path / "junk"), check=False)
    assert p.returncode != 0 and "neither an OCI image layout" in p.stderr
    p = cli("image", "import", "Bad/Name", str(tmp_path / "junk"), check=False)
    assert p.returncode != 0 and "image name" in p.stderr


def test_serve_on_a_fresh_data_dir_starts_in_about_a_second(store_ready):
    s = Server()
    t0 = time.time()
    s.start()
    took = time.time() - t0
    try:
        print(f"serve on a fresh data dir healthy in {took:.2f} s")
        assert took < 5, took
        assert requests.get(s.base + "/healthz", timeout=5).json()["image"]["state"] == "ready"
    finally:
        s.close()
