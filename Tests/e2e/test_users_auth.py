"""User bearer tokens (JWT): verification, isolation between users, never persisted."""
import os
import time

import jwt
import pytest

SECRET = "e2e-user-jwt-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def jwt_server():
    from devbox_harness import Server
    s = Server(env={"DEVBOX_USER_JWT_SECRET": SECRET}).start()
    yield s
    s.close()


def bearer(sub: str, **claims) -> str:
    payload = {"sub": sub, "exp": int(time.time()) + 600, **claims}
    return jwt.encode(payload, SECRET, algorithm="HS256")


def test_users_only_see_their_own_devboxes(jwt_server):
    s = jwt_server
    alice, bob = bearer("alice"), bearer("bob")
    d = s.create({"name": "alices"}, bearer=alice)
    assert s.request("GET", f"/api/v1/devboxes/{d['id']}", bearer=alice).status_code == 200
    r = s.request("GET", f"/api/v1/devboxes/{d['id']}", bearer=bob)
    assert r.status_code == 404
    unknown = s.request("GET", "/api/v1/devboxes/dbx_doesnotexist0000000", bearer=bob)
    assert r.json()["error"]["code"] == unknown.json()["error"]["code"] == "not_found"
    assert s.request("DELETE", f"/api/v1/devboxes/{d['id']}", bearer=bob).status_code == 404
    assert s.request("GET", f"/api/v1/devboxes/{d['id']}/operations", bearer=bob).status_code == 404
    assert [x["id"] for x in s.request("GET", "/api/v1/devboxes", bearer=bob).json()["devboxes"]] == []
    # the provider's own service user is a different user too
    assert s.request("GET", f"/api/v1/devboxes/{d['id']}").status_code == 404
    me = s.request("GET", "/api/v1/users/me", bearer=alice).json()
    assert me["external_id"] == "alice"
    assert s.request("DELETE", f"/api/v1/devboxes/{d['id']}", bearer=alice).status_code == 204


@pytest.mark.parametrize("make", [
    # past the verifier's 60 s clock-skew leeway
    lambda: jwt.encode({"sub": "x", "exp": int(time.time()) - 120}, SECRET, algorithm="HS256"),
    lambda: jwt.encode({"sub": "x", "exp": int(time.time()) + 600}, "wrong-secret-wrong-secret-wrong!!", algorithm="HS256"),
    lambda: jwt.encode({"sub": "x", "exp": int(time.time()) + 600}, None, algorithm="none"),
    lambda: jwt.encode({"exp": int(time.time()) + 600}, SECRET, algorithm="HS256"),
    lambda: "not.a.jwt",
], ids=["expired", "bad-signature", "alg-none", "no-sub", "garbage"])
def test_bad_bearer_is_401(jwt_server, make):
    r = jwt_server.request("GET", "/api/v1/users/me", bearer=make())
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"


def test_bearer_is_never_persisted_or_logged(jwt_server):
    token = bearer("carol", note="unique-claim-" + os.urandom(8).hex())
    assert jwt_server.request("GET", "/api/v1/users/me", bearer=token).status_code == 200
    d = jwt_server.create({"name": "carols"}, bearer=token)
    jwt_server.request("DELETE", f"/api/v1/devboxes/{d['id']}", bearer=token)
    needles = [token.encode(), token.split(".")[2].encode()]
    for name in os.listdir(jwt_server.data_dir):
        path = os.path.join(jwt_server.data_dir, name)
        if os.path.isfile(path):
            blob = open(path, "rb").read()
            for n in needles:
                assert n not in blob, f"bearer token found in {name}"
    log = jwt_server.log().encode()
    for n in needles:
        assert n not in log
