"""The devbox list: the seed's answer unchanged, pages with a state filter and a cursor, and
destroyed devboxes purged after DEVBOX_DESTROYED_RETENTION."""
import time

import pytest


@pytest.fixture
def lister(fresh_server):
    s = fresh_server(env={"DEVBOX_WARM_POOL": "0", "DEVBOX_DESTROYED_RETENTION": "2",
                          "DEVBOX_LIFETIME_CHECK_SECONDS": "1"}).start()
    return s


def test_pages_filters_and_the_seed_answer(lister):
    s = lister
    ids = [s.create({"name": f"p{i}"})["id"] for i in range(7)]
    for i in ids:
        s.wait_state(i)
    s.request("DELETE", f"/api/v1/devboxes/{ids[0]}")
    s.wait_state(ids[0], states=("destroyed",))
    # The seed's answer: every devbox, newest first, no cursor field.
    whole = s.request("GET", "/api/v1/devboxes").json()
    assert set(whole) == {"devboxes"} and len(whole["devboxes"]) == 7
    # Pages of 3 cover everything once, in the same order.
    seen, cursor = [], None
    while True:
        q = "limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = s.request("GET", f"/api/v1/devboxes?{q}").json()
        assert len(page["devboxes"]) <= 3
        seen += [d["id"] for d in page["devboxes"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [d["id"] for d in whole["devboxes"]]
    # A state filter (repeatable, or comma-separated).
    live = s.request("GET", "/api/v1/devboxes?state=ready&state=stopped").json()
    assert {d["id"] for d in live["devboxes"]} == set(ids[1:]) and live["next_cursor"] is None
    gone = s.request("GET", "/api/v1/devboxes?state=destroyed,failed").json()
    assert [d["id"] for d in gone["devboxes"]] == [ids[0]]
    for q, field in (("state=bogus", "state"), ("limit=0", "limit"), ("limit=501", "limit"), ("limit=x", "limit"),
                     ("cursor=!!", "cursor")):
        r = s.request("GET", f"/api/v1/devboxes?{q}")
        assert r.status_code == 422 and r.json()["error"]["field"] == field, (q, r.text)


def test_destroyed_devboxes_are_purged_after_the_retention(lister):
    s = lister
    d = s.create({"name": "short-lived"})
    s.wait_state(d["id"])
    keep = s.create({"name": "kept"})
    s.request("DELETE", f"/api/v1/devboxes/{d['id']}")
    assert s.get(d["id"])["state"] == "destroyed"          # visible during the retention
    deadline = time.time() + 15
    while time.time() < deadline and s.request("GET", f"/api/v1/devboxes/{d['id']}").status_code != 404:
        time.sleep(0.25)
    assert s.request("GET", f"/api/v1/devboxes/{d['id']}").status_code == 404
    assert s.request("GET", f"/api/v1/devboxes/{d['id']}/operations").status_code == 404
    assert [x["id"] for x in s.request("GET", "/api/v1/devboxes").json()["devboxes"]] == [keep["id"]]
