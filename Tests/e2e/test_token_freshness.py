"""Provider tokens written by another process (`devbox token create|revoke` on the same
database) take effect on the serve's very next request, despite its token cache."""
import requests

NO_POOL = {"DEVBOX_WARM_POOL": "0"}


def me(s, token: str) -> int:
    return requests.get(s.base + "/api/v1/users/me", headers={"X-Provider-Token": token}, timeout=10).status_code


def token_id(s, token: str) -> str:
    rows = [l.split("\t") for l in s.cli("token", "list", "--data-dir", s.data_dir).stdout.splitlines()]
    return [r[0] for r in rows if r[2].endswith(token[-4:]) and r[4] == "active"][0]


def test_new_token_works_at_once_and_revoked_one_stops_at_once(fresh_server):
    s = fresh_server(env=NO_POOL).start()
    for round in range(5):
        # The serve's cache is warm: it has just answered for the first token.
        assert me(s, s.token) == 200
        new = s.create_token(f"p{round}")
        assert me(s, new) == 200, f"round {round}: a token made by `devbox token create` was refused"
        s.cli("token", "revoke", token_id(s, new), "--data-dir", s.data_dir)
        assert me(s, new) == 401, f"round {round}: a revoked token still worked"
        assert me(s, s.token) == 200


def test_unknown_token_then_created_one(fresh_server):
    """A refusal is not remembered: the first request of a token can race its creation."""
    s = fresh_server(env=NO_POOL).start()
    assert me(s, "dbx_pt_nonsense") == 401
    new = s.create_token("late")
    assert me(s, new) == 200
