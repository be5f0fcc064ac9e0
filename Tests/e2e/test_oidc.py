"""User tokens from an OpenID provider (DEVBOX_USER_OIDC_ISSUER): discovery, key rotation
without a restart, a bounded number of JWKS fetches, and every bad token answered 401.

The provider is a small HTTP server on 127.0.0.1 run by the tests: it serves
`<issuer>/.well-known/openid-configuration` and a JWKS, signs tokens with its keys (RS256 and
ES256), rotates them, counts fetches, and can be broken in the ways a real one breaks.
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import ssl
import hmac
import json
import re
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from devbox_harness import BIN, Server, free_port

AUDIENCE = "devbox-e2e"
REFRESH = 2  # DEVBOX_USER_OIDC_MIN_REFRESH_SECONDS for these tests (default 30)
NO_POOL = {"DEVBOX_WARM_POOL": "0"}


class Key:
    def __init__(self, kind: str):
        self.kid = f"{kind}-{uuid.uuid4().hex[:8]}"
        if kind == "rsa":
            self.alg, self.private = "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)
            jwk = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        else:
            self.alg, self.private = "ES256", ec.generate_private_key(ec.SECP256R1())
            jwk = json.loads(ECAlgorithm.to_jwk(self.private.public_key()))
        self.jwk = {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


class Issuer:
    """A minimal OpenID provider on 127.0.0.1."""

    def __init__(self, port: int | None = None, tls: tuple[str, str] | None = None):
        self.port = port or free_port()
        self.tls = tls  # (certificate chain file, key file): https
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/realms/e2e"
        self.keys = [Key("rsa"), Key("ec")]
        self.fetches: dict[str, int] = {}
        self.lock = threading.Lock()
        # What can be broken: the discovery document's fields, and a status or redirect per path.
        self.discovery_override: dict = {}
        self.redirect: dict[str, str] = {}
        self.server: ThreadingHTTPServer | None = None

    @property
    def jwks_fetches(self) -> int:
        with self.lock:
            return self.fetches.get("/realms/e2e/protocol/openid-connect/certs", 0)

    def discovery(self) -> dict:
        doc = {
            "issuer": self.url,
            "jwks_uri": self.url + "/protocol/openid-connect/certs",
            "authorization_endpoint": self.url + "/protocol/openid-connect/auth",
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        }
        doc.update(self.discovery_override)
        return {k: v for k, v in doc.items() if v is not None}

    def start(self) -> "Issuer":
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                with issuer.lock:
                    issuer.fetches[self.path] = issuer.fetches.get(self.path, 0) + 1
                    target = issuer.redirect.get(self.path)
                    if self.path == "/realms/e2e/.well-known/openid-configuration":
                        body = issuer.discovery()
                    elif self.path == "/realms/e2e/protocol/openid-connect/certs":
                        body = {"keys": [k.jwk for k in issuer.keys]}
                    else:
                        body = None
                if target:
                    self.send_response(302)
                    self.send_header("Location", target)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if body is None:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def rotate(self) -> Key:
        """A new signing key replaces every old one (the old kids disappear from the JWKS)."""
        new = Key("rsa")
        with self.lock:
            self.keys = [new]
        return new

    def token(self, sub: str = "alice", key: Key | None = None, kid: str | None = None, **claims) -> str:
        key = key or self.keys[0]
        now = int(time.time())
        payload = {"iss": self.url, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 600, **claims}
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, key.private, algorithm=key.alg, headers={"kid": kid or key.kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict, payload: dict, signature: bytes = b"") -> str:
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    return signing_input + "." + b64(signature)


def hs256_with(secret: bytes, header: dict, payload: dict) -> str:
    """An HS256 token "signed" with a public key as the HMAC secret (key confusion)."""
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    return signing_input + "." + b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


def oidc_env(issuer: Issuer, **extra) -> dict:
    return {"DEVBOX_USER_OIDC_ISSUER": issuer.url, "DEVBOX_USER_OIDC_AUDIENCE": AUDIENCE,
            "DEVBOX_USER_OIDC_MIN_REFRESH_SECONDS": str(REFRESH), **NO_POOL, **extra}


@pytest.fixture(scope="module")
def issuer():
    i = Issuer().start()
    yield i
    i.close()


@pytest.fixture(scope="module")
def oidc_server(issuer):
    s = Server(env=oidc_env(issuer)).start()
    yield s
    s.close()


def me(s: Server, token: str):
    return s.request("GET", "/api/v1/users/me", bearer=token)


def test_discovery_at_start_and_tokens_scope_devboxes_to_sub(issuer, oidc_server):
    s = oidc_server
    # Discovery ran at start, in the background: the log says which keys it found.
    deadline = time.time() + 10
    while "OIDC signing keys fetched" not in s.log() and time.time() < deadline:
        time.sleep(0.05)
    assert f"OIDC signing keys fetched for issuer {issuer.url}: 2 usable" in s.log()
    rsa_key, ec_key = issuer.keys
    alice, bob = issuer.token("alice", key=rsa_key), issuer.token("bob", key=ec_key)
    assert me(s, alice).json()["external_id"] == "alice"
    assert me(s, bob).json()["external_id"] == "bob"
    d = s.create({"name": "alices"}, bearer=alice)
    assert s.request("GET", f"/api/v1/devboxes/{d['id']}", bearer=alice).status_code == 200
    assert s.request("GET", f"/api/v1/devboxes/{d['id']}", bearer=bob).status_code == 404
    assert [x["id"] for x in s.request("GET", "/api/v1/devboxes", bearer=bob).json()["devboxes"]] == []
    assert s.request("GET", f"/api/v1/devboxes/{d['id']}").status_code == 404  # the provider's own user
    assert s.request("DELETE", f"/api/v1/devboxes/{d['id']}", bearer=alice).status_code == 204
    # aud may be a list holding the audience among others
    assert me(s, issuer.token("carol", aud=["other-app", AUDIENCE])).status_code == 200


def bad_tokens(issuer: Issuer) -> dict:
    key = issuer.keys[0]
    stranger = Key("rsa")
    now = int(time.time())
    good_claims = {"iss": issuer.url, "aud": AUDIENCE, "sub": "mallory", "exp": now + 600}
    return {
        "wrong-iss": issuer.token(iss="http://127.0.0.1:1/realms/other"),
        "iss-with-trailing-slash": issuer.token(iss=issuer.url + "/"),
        "wrong-aud": issuer.token(aud="another-app"),
        "no-aud": issuer.token(aud=None),
        "expired": issuer.token(exp=now - 120, iat=now - 720),
        "not-yet-valid": issuer.token(nbf=now + 600),
        "no-sub": issuer.token(sub=None),
        "unknown-key": issuer.token(key=stranger),
        "known-kid-other-key": issuer.token(key=stranger, kid=key.kid),
        "alg-none": unsigned({"alg": "none", "typ": "JWT"}, good_claims),
        "alg-none-with-kid": unsigned({"alg": "none", "kid": key.kid}, good_claims),
        "hs256-with-public-pem": hs256_with(key.public_pem(), {"alg": "HS256", "kid": key.kid}, good_claims),
        "hs256-with-jwk": hs256_with(json.dumps(key.jwk).encode(), {"alg": "HS256", "kid": key.kid}, good_claims),
        "rs256-header-on-ec-key": unsigned({"alg": "RS256", "kid": issuer.keys[1].kid}, good_claims, b"x" * 256),
        "garbage": "not.a.jwt",
    }


def test_bad_tokens_are_401(issuer, oidc_server):
    tokens = bad_tokens(issuer)
    for name, token in tokens.items():
        r = me(oidc_server, token)
        assert r.status_code == 401, f"{name}: {r.status_code} {r.text}"
        assert r.json()["error"]["code"] == "unauthorized", name
    # Bearer tokens are never logged, not even refused ones.
    log = oidc_server.log()
    for name, token in tokens.items():
        for part in token.split("."):
            assert len(part) < 16 or part not in log, name


def test_key_rotation_is_picked_up_without_restart(issuer, oidc_server):
    s = oidc_server
    old = issuer.token("dora")
    assert me(s, old).status_code == 200
    time.sleep(REFRESH + 0.5)  # past the refresh interval of any earlier refresh
    before = issuer.jwks_fetches
    new_key = issuer.rotate()
    new = issuer.token("dora", key=new_key)
    r = me(s, new)
    assert r.status_code == 200, r.text
    assert r.json()["external_id"] == "dora"
    assert issuer.jwks_fetches == before + 1
    assert "OIDC signing keys refreshed" in s.log()
    # The withdrawn key no longer opens anything.
    assert me(s, old).status_code == 401
    assert me(s, new).status_code == 200


def test_a_burst_of_unknown_kids_fetches_the_jwks_a_bounded_number_of_times(issuer, oidc_server):
    s = oidc_server
    time.sleep(REFRESH + 0.5)
    stranger = Key("ec")
    tokens = [issuer.token(key=stranger, kid=f"unknown-{i}") for i in range(60)]
    before = issuer.jwks_fetches
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda t: me(s, t).status_code, tokens))
    elapsed = time.monotonic() - t0
    assert statuses == [401] * len(tokens)
    fetched = issuer.jwks_fetches - before
    # One refresh per REFRESH seconds at most (the burst starts right after the interval).
    assert 1 <= fetched <= 1 + int(elapsed / REFRESH), (fetched, elapsed)
    # A second burst at once: no fetch at all.
    before = issuer.jwks_fetches
    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(lambda t: me(s, t).status_code, tokens[:20]))
    assert issuer.jwks_fetches - before <= (1 if time.monotonic() - t0 > REFRESH else 0)
    # Tokens that claim another issuer never cause a fetch.
    time.sleep(REFRESH + 0.5)
    before = issuer.jwks_fetches
    for i in range(10):
        assert me(s, issuer.token(key=stranger, kid=f"x-{i}", iss="http://127.0.0.1:1/evil")).status_code == 401
    assert issuer.jwks_fetches == before
    # Valid tokens still work throughout.
    assert me(s, issuer.token("erin")).status_code == 200


def test_provider_down_at_start_then_broken_then_fixed(fresh_server):
    """Serve starts while the provider is down (a warning, tokens answered 503, retried on use);
    a document naming another issuer, an http jwks_uri off loopback, one over the size cap, and
    a redirect are refused (503 and one log line each) until the provider is fixed — then
    tokens work, no restart."""
    issuer = Issuer()  # not started: nothing listens on its port yet
    s = fresh_server(env=oidc_env(issuer))
    s.start()
    try:
        token = issuer.token("frank")
        deadline = time.time() + 10
        while "OIDC discovery" not in s.log() and time.time() < deadline:
            time.sleep(0.05)
        assert re.search(rf"OIDC discovery for issuer {re.escape(issuer.url)} failed: discovery document: connection refused", s.log())
        r = me(s, token)
        assert r.status_code == 503, r.text
        # The provider token alone still works: the service is up.
        assert s.request("GET", "/api/v1/users/me").status_code == 200

        def wait_for(pattern: str) -> None:
            deadline = time.time() + 3 * REFRESH + 5
            while time.time() < deadline:
                r = me(s, token)
                assert r.status_code == 503, r.text
                if re.search(pattern, s.log()):
                    return
                time.sleep(0.2)
            raise AssertionError(f"no log line /{pattern}/:\n{s.log()[-3000:]}")

        issuer.discovery_override = {"issuer": issuer.url + "/"}
        issuer.start()
        wait_for(r"names issuer '.*/realms/e2e/', not the configured .* \(they must be equal exactly\)")
        issuer.discovery_override = {"jwks_uri": "http://192.0.2.1/certs"}
        wait_for(r"jwks_uri is not https \(plain http only on loopback\)")
        issuer.discovery_override = {"padding": "x" * (300 * 1024)}
        wait_for(r"discovery document: the answer is larger than 256 KiB")
        issuer.discovery_override = {}
        issuer.redirect = {"/realms/e2e/.well-known/openid-configuration": f"http://127.0.0.1:{issuer.port}/moved"}
        wait_for(r"discovery document: answered 302 \(redirects are not followed\)")
        assert issuer.fetches.get("/moved", 0) == 0
        issuer.redirect = {}
        deadline = time.time() + 3 * REFRESH + 5
        while me(s, token).status_code != 200 and time.time() < deadline:
            time.sleep(0.2)
        r = me(s, token)
        assert r.status_code == 200, s.log()[-3000:]
        assert r.json()["external_id"] == "frank"
    finally:
        issuer.close()


def make_pki(directory) -> tuple[str, tuple[str, str]]:
    """A test CA and a certificate for 127.0.0.1 it signed: (CA file, (chain file, key file))."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devbox e2e test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    ca_file, chain_file, key_file = (str(directory / n) for n in ("ca.pem", "chain.pem", "key.pem"))
    with open(ca_file, "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(chain_file, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return ca_file, (chain_file, key_file)


def test_https_provider_is_verified_against_the_configured_ca(fresh_server, tmp_path):
    """The production path: discovery and JWKS over https with certificate verification. Trusted
    through DEVBOX_USER_OIDC_CA_FILE; without it the system's roots do not know the test CA, so
    the keys are never fetched (503, one warning naming the TLS failure)."""
    ca_file, tls = make_pki(tmp_path)
    issuer = Issuer(tls=tls).start()
    try:
        s = fresh_server(env=oidc_env(issuer, DEVBOX_USER_OIDC_CA_FILE=ca_file))
        s.start()
        r = me(s, issuer.token("gina"))
        assert r.status_code == 200, s.log()[-2000:]
        assert r.json()["external_id"] == "gina"
        assert issuer.jwks_fetches == 1
        untrusting = fresh_server(env=oidc_env(issuer))
        untrusting.start()
        assert me(untrusting, issuer.token("gina")).status_code == 503
        assert re.search(r"OIDC discovery for issuer https://127\.0\.0\.1:\d+/realms/e2e failed: discovery document: TLS failure",
                         untrusting.log()), untrusting.log()[-2000:]
        assert issuer.jwks_fetches == 1
    finally:
        issuer.close()


def serve_config_error(env: dict) -> tuple[int, str]:
    s = Server(env={**NO_POOL, **env})
    try:
        p = subprocess.run(
            [BIN, "serve", "--data-dir", s.data_dir, "--http", f"127.0.0.1:{s.http_port}", "--ssh", f"127.0.0.1:{s.ssh_port}"],
            capture_output=True, text=True, env=s.env(), stdin=subprocess.DEVNULL, timeout=30)
        return p.returncode, p.stderr
    finally:
        subprocess.run(["rm", "-rf", s.tmp], check=False)


@pytest.mark.parametrize("env,message", [
    ({"DEVBOX_USER_OIDC_ISSUER": "https://id.example", "DEVBOX_USER_OIDC_AUDIENCE": "a",
      "DEVBOX_USER_JWT_SECRET": "e2e-user-jwt-secret-0123456789abcdef"},
     "DEVBOX_USER_OIDC_ISSUER cannot be combined with DEVBOX_USER_JWT_SECRET: choose one source of user keys"),
    ({"DEVBOX_USER_OIDC_ISSUER": "https://id.example", "DEVBOX_USER_OIDC_AUDIENCE": "a",
      "DEVBOX_USER_JWKS_FILE": "/nonexistent/jwks.json"},
     "DEVBOX_USER_OIDC_ISSUER cannot be combined with DEVBOX_USER_JWKS_FILE: choose one source of user keys"),
    ({"DEVBOX_USER_OIDC_ISSUER": "https://id.example"},
     "DEVBOX_USER_OIDC_ISSUER needs DEVBOX_USER_OIDC_AUDIENCE"),
    ({"DEVBOX_USER_OIDC_ISSUER": "http://id.example", "DEVBOX_USER_OIDC_AUDIENCE": "a"},
     "DEVBOX_USER_OIDC_ISSUER 'http://id.example' is not usable: it must be https (plain http only on a loopback address)"),
    ({"DEVBOX_USER_OIDC_AUDIENCE": "a"},
     "need DEVBOX_USER_OIDC_ISSUER"),
    ({"DEVBOX_USER_OIDC_ISSUER": "https://id.example", "DEVBOX_USER_OIDC_AUDIENCE": "a",
      "DEVBOX_USER_OIDC_CA_FILE": "/nonexistent/ca.pem"},
     "DEVBOX_USER_OIDC_CA_FILE '/nonexistent/ca.pem' is not a readable PEM file of CA certificates"),
], ids=["with-secret", "with-jwks-file", "no-audience", "http-off-loopback", "audience-alone", "bad-ca-file"])
def test_configuration_errors_end_serve_with_one_line(env, message):
    code, err = serve_config_error(env)
    assert code != 0
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("devbox: error: ") and message in lines[0], err
