"""The create body cap is sized from the documented limits: a create at every documented
maximum at once is accepted however JSON encodes it; one byte more is 413."""
import json

import pytest

from devbox_harness import Server

KIB = 1024
# The seed's documented limits (values measured decoded), 6× for JSON's \u00XX escapes,
# 256-byte keys, and 1 MiB for the rest of a create: CreateValidation.maxRequestBodyBytes.
CAP = 6 * (64 * (32 * KIB + 256) + 32 * 4 * KIB) + 1024 * KIB


@pytest.fixture(scope="module")
def server():
    s = Server(env={"DEVBOX_WARM_POOL": "0"}).start()
    yield s
    s.close()


def body_of_size(size: int) -> bytes:
    """Every documented maximum at once, each string made of a control character JSON must
    escape (6 bytes a byte), padded with whitespace to exactly `size` bytes."""
    obj = {
        "name": "\u00e9" * 64,
        "env": {f"K{i:02d}".ljust(256, "_"): "\x01" * (32 * KIB) for i in range(64)},
        "setup_commands": ["\x01" * (4 * KIB)] * 32,
        "setup_timeout_seconds": 3600,
        "credential_profile": {"inject_claude_token": False, "inject_codex_token": False},
    }
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode()
    assert len(text) <= size, (len(text), size)
    return b"{" + b" " * (size - len(text)) + text[1:]


def post(s: Server, body: bytes):
    return s.request("POST", "/api/v1/devboxes", data=body, headers={"Content-Type": "application/json"}, timeout=120)


def test_a_create_at_every_documented_maximum_is_accepted(server):
    r = post(server, body_of_size(CAP))
    assert r.status_code == 202, r.text[:500]
    d = r.json()
    assert len(d["env_keys"]) == 64 and d["name"] == "\u00e9" * 64
    assert server.request("DELETE", f"/api/v1/devboxes/{d['id']}").status_code in (202, 204)


def test_one_byte_more_is_413(server):
    r = post(server, body_of_size(CAP + 1))
    assert r.status_code == 413, r.text[:500]
    assert r.json()["error"]["code"] == "payload_too_large", r.text
