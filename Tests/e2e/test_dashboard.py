"""Web dashboard (issue 8): a real headless Chromium against a real `devbox serve` with real
crun boxes. Screenshots of every page (desktop and phone) go to artifacts/dashboard/."""
from __future__ import annotations

import calendar
import hashlib
import os
import re
import shlex
import sqlite3
import subprocess
import tempfile
import time

import jwt
import pytest
import requests
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select

from dashboard_browser import Browser, form_token, sign_in_requests
from devbox_harness import Server
from secret_scan import data_dir_files, scan_files

JWT_SECRET = "e2e-dashboard-jwt-secret-0123456789abcdef"


def bearer(sub: str, ttl: int = 3600) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + ttl}, JWT_SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def dash():
    s = Server(env={"DEVBOX_USER_JWT_SECRET": JWT_SECRET}).start()
    yield s
    # every devbox of every user this module made
    for user in ["", "alice", "bob", "dora", "erin"]:
        b = bearer(user) if user else None
        try:
            for d in s.request("GET", "/api/v1/devboxes", bearer=b).json().get("devboxes", []):
                if d["state"] != "destroyed":
                    s.request("DELETE", f"/api/v1/devboxes/{d['id']}", bearer=b)
        except Exception:
            pass
    s.close()


@pytest.fixture
def browser():
    b = Browser()
    yield b
    b.close()


@pytest.fixture(scope="module")
def ssh_key():
    d = tempfile.mkdtemp(prefix="devbox-dash-key-")
    path = os.path.join(d, "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    fp = subprocess.run(["ssh-keygen", "-l", "-f", path + ".pub"], capture_output=True, text=True, check=True).stdout.split()[1]
    yield path, open(path + ".pub").read().strip(), fp
    subprocess.run(["rm", "-rf", d], check=False)


def sign_in(b: Browser, s: Server, provider: str, user: str | None = None) -> None:
    b.get(s.base + "/login")
    b.type("#provider_token", provider)
    if user:
        b.type("#user_token", user)
    b.submit("#sign-in")


def key_of(s: Server) -> bytes:
    return open(os.path.join(s.data_dir, "encryption.key"), "rb").read().strip()


def test_full_flow_sign_in_create_watch_ssh_destroy_sign_out(dash, browser, ssh_key):
    s, b = dash, browser
    key_path, pub, fingerprint = ssh_key
    mark = "dash-setup-" + os.urandom(6).hex()
    env_secret = "env-secret-" + os.urandom(12).hex()
    claude = "sk-ant-dash-" + os.urandom(16).hex()

    # Unauthenticated: every page sends to the sign-in form.
    b.get(s.base + "/")
    assert b.path() == "/login"
    b.shot("01-login")
    sign_in(b, s, s.token)
    assert b.path() == "/"
    cookie = b.cookie("devbox_session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
    assert s.token not in b.driver.page_source
    b.shot("02-list-empty")

    # Account: set the SSH key; the page shows its fingerprint.
    b.find('nav a[href="/account"]').click()
    b.wait_for("#ssh-key-form")
    b.remember()
    b.type("#public_key", pub)
    b.submit("#save-ssh-key")
    assert b.find("#ssh-fingerprint").text == fingerprint
    b.shot("03-account")

    # Create: name, setup command, an env row, Claude injection.
    b.get(s.base + "/devboxes/new")
    b.shot("04-create")
    # the hint states the API's own default (the seed's 900 s)
    assert "default 900" in b.find("label[for=setup_timeout_seconds]").text
    b.type("#name", "dash-flow")
    b.type("#setup_commands", f"echo {mark}\necho second-line")
    b.type("#env_key_0", "DASH_SECRET")
    b.type("#env_value_0", env_secret)
    b.find("#inject_claude_token").click()
    b.type("#claude_token", claude)
    b.submit("#create")
    m = re.match(r"^/devboxes/(dbx_[a-z0-9]+)\?notice=created$", b.path())
    assert m, b.path()
    devbox_id = m.group(1)
    b.shot("05-devbox-provisioning")

    # Live state: the page updates itself (polling) and settles on ready.
    b.wait_text("#devbox-state", "ready", timeout=180)
    b.wait_for("#create-session-form", timeout=30)
    b.remember()
    out = b.find("#output-run_setup_commands").get_attribute("textContent")
    assert mark in out and "second-line" in out
    statuses = {e.get_attribute("data-op"): e.find_element("css selector", "[data-op-status]").text
                for e in b.find_all("li[data-op]")}
    assert statuses == {"provision": "succeeded", "inject_credentials": "succeeded",
                        "clone_repositories": "skipped",  # no repositories
                        "run_setup_commands": "succeeded", "publish_access": "succeeded"}
    assert s.get(devbox_id)["state"] == "ready"

    # The list shows it, ready, with its plan.
    b.get(s.base + "/")
    row = b.find(f'tr[data-devbox="{devbox_id}"]')
    assert row.find_element("css selector", "[data-state]").text == "ready"
    assert "small" in row.text
    b.shot("06-list")

    # SSH session: create, read the command, run it with the real ssh client.
    b.get(s.base + f"/devboxes/{devbox_id}")
    b.submit("#create-session")
    assert "notice=session_created" in b.path()
    command = b.find("li.session.new code.ssh-command").text
    assert command.startswith("ssh -p ") and "@" in command
    b.find("li.session.new button[data-copy]").click()
    b.shot("07-devbox-ready-session")
    known = os.path.join(os.path.dirname(key_path), "known_hosts")
    argv = shlex.split(command)
    argv = argv[:1] + ["-i", key_path, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                       "-o", f"UserKnownHostsFile={known}"] + argv[1:] + ["echo via-dashboard; echo $DASH_SECRET | wc -c"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "via-dashboard"
    assert r.stdout.splitlines()[1].strip() == str(len(env_secret) + 1)

    # Revoke it: gone from the page and refused by the gateway.
    session_id = b.find("li.session.new").get_attribute("data-session")
    b.submit(f'li[data-session="{session_id}"] button.danger')
    assert not b.find_all(f'li[data-session="{session_id}"]')
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0

    # Destroy with confirmation.
    b.find("#confirm").click()
    b.submit("#destroy-button")
    assert b.path() == "/?notice=destroyed"
    assert s.get(devbox_id)["state"] == "destroyed"
    assert not b.find_all(f'tr[data-devbox="{devbox_id}"]')

    # Remove the SSH key: the account page says so.
    b.get(s.base + "/account")
    b.submit("#remove-ssh-key")
    assert b.find("#no-ssh-key") and not b.find_all("#ssh-fingerprint")
    assert s.request("GET", "/api/v1/users/me").json()["ssh_key"] is None

    # Sign out: the cookie is gone and the old value no longer works.
    old = cookie["value"]
    b.submit("#sign-out")
    assert b.path() == "/login?notice=signed_out"
    assert b.cookie("devbox_session") is None
    r = requests.get(s.base + "/", cookies={"devbox_session": old}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"] == "/login"

    # Nothing is loaded from another origin: every src/href is relative to us.
    for page in b.pages:
        assert not re.findall(r'(?:src|href|action)="(?:https?:)?//', page), "external asset or link"
    # Secrets typed into the form: never in a page, the log or the database.
    for page in b.pages:
        for secret in (env_secret, claude, s.token):
            assert secret not in page
    files = data_dir_files(s.data_dir) + [s.log_path]
    assert not scan_files(files, claude.encode(), [key_of(s)]), "Claude token left a copy"
    assert not scan_files(files, s.token.encode(), [key_of(s)]), "provider token left a copy"
    # the env value is stored Fernet-encrypted by design; never in plain or base64
    assert not scan_files(files, env_secret.encode(), []), "env value stored in clear"
    assert not scan_files(files, old.encode(), []), "session id stored (only its hash may be)"


def test_list_updates_itself(dash, browser):
    s, b = dash, browser
    erin = bearer("erin")
    sign_in(b, s, s.token, erin)
    assert b.find("#no-devboxes")
    d = s.create({"name": "listed-live", "setup_commands": ["sleep 8"]}, bearer=erin)
    try:
        # a new devbox appears without any navigation by the test (the script reloads the list)
        b.wait_for(f'tr[data-devbox="{d["id"]}"]', timeout=30)
        b.driver.execute_script("window.__sameDocument = true")
        assert b.find(f'tr[data-devbox="{d["id"]}"] [data-state]').text in ("requested", "provisioning")
        # and its state changes in place, without another reload
        b.wait_text(f'tr[data-devbox="{d["id"]}"] [data-state]', "ready", timeout=180)
        assert b.driver.execute_script("return window.__sameDocument === true")
    finally:
        s.request("DELETE", f"/api/v1/devboxes/{d['id']}", bearer=erin)


def test_validation_errors_are_shown_next_to_the_field(dash, browser):
    s, b = dash, browser
    sign_in(b, s, s.token)
    env_secret = "never-echo-" + os.urandom(8).hex()
    codex = "sk-codex-dash-" + os.urandom(8).hex()
    b.get(s.base + "/devboxes/new")
    b.type("#name", "invalid-one")
    b.type("#setup_timeout_seconds", "5")
    b.type("#env_key_0", "GOOD_KEY")
    b.type("#env_value_0", env_secret)
    b.find("#inject_codex_token").click()
    b.type("#codex_token", codex)
    b.submit("#create")
    err = b.find("#err-setup_timeout_seconds")
    assert "between 30 and 3600" in err.text
    assert b.find("#setup_timeout_seconds").get_attribute("aria-invalid") == "true"
    assert b.find("#name").get_attribute("value") == "invalid-one"
    assert b.find("#env_key_0").get_attribute("value") == "GOOD_KEY"
    assert b.find("#env_value_0").get_attribute("value") == ""
    assert b.find("#codex_token").get_attribute("value") == ""
    assert env_secret not in b.driver.page_source and codex not in b.driver.page_source
    b.shot("08-create-errors")

    # "Add variable" adds a labelled row and moves the focus into it.
    b.find('button[data-add-row="env-row-template"]').click()
    assert b.driver.switch_to.active_element.get_attribute("id") == "env_key_1"
    assert b.find('label[for="env_value_1"]').text == "Value"
    # A bad env name: the error sits next to that row's name field.
    b.type("#setup_timeout_seconds", "")
    b.type("#env_key_0", "lower-case")
    b.find("#inject_codex_token").click()  # untick
    b.submit("#create")
    assert "must match" in b.find("#err-env_key_0").text
    # A repository row without owner/name.
    b.type("#env_key_0", "")
    b.type("#repo_ref_0", "main")
    b.submit("#create")
    assert "owner/name" in b.find("#err-repo_full_name_0").text
    b.type("#repo_full_name_0", "not a repo")
    b.submit("#create")
    assert "owner/name" in b.find("#err-repo_full_name_0").text
    assert [d for d in s.request("GET", "/api/v1/devboxes").json()["devboxes"] if d["name"] == "invalid-one"] == []
    # An invalid SSH key: the error is next to the key field, the draft is kept.
    b.get(s.base + "/account")
    b.type("#public_key", "ssh-ed25519 not-base64")
    b.submit("#save-ssh-key")
    assert b.find("#err-public_key").text
    assert b.find("#public_key").get_attribute("aria-invalid") == "true"
    assert "not-base64" in b.find("#public_key").get_attribute("value")


def test_bad_sign_in_tokens_show_an_error(dash, browser):
    s, b = dash, browser
    sign_in(b, s, "dbx_pt_" + "x" * 43)
    assert b.path() == "/login"
    assert "not valid" in b.find("#err-provider_token").text
    assert b.find("#provider_token").get_attribute("value") == ""
    assert b.cookie("devbox_session") is None
    b.shot("09-login-error")
    expired = jwt.encode({"sub": "alice", "exp": int(time.time()) - 600}, JWT_SECRET, algorithm="HS256")
    sign_in(b, s, s.token, expired)
    assert "not valid" in b.find("#err-user_token").text
    assert expired not in b.driver.page_source
    assert b.cookie("devbox_session") is None
    sign_in(b, s, "")
    assert "enter a provider token" in b.find("#err-provider_token").text
    # Keyboard only: type the token and press Enter in the field.
    b.get(s.base + "/login")
    old = b.find("html")
    field = b.find("#provider_token")
    field.send_keys(s.token + Keys.ENTER)
    b.wait(30).until(EC.staleness_of(old))
    assert b.path() == "/"


def test_csrf_less_and_cross_origin_posts_are_refused(dash):
    s = dash
    http = sign_in_requests(s.base, s.token)
    page = http.get(s.base + "/devboxes/new", timeout=10)
    token = form_token(page.text)
    body = {"name": "csrf-probe", "csrf_token": token}
    before = len(s.request("GET", "/api/v1/devboxes").json()["devboxes"])
    # no CSRF token
    r = http.post(s.base + "/devboxes", data={"name": "csrf-probe"}, headers={"Origin": s.base}, allow_redirects=False)
    assert r.status_code == 403
    # a wrong CSRF token
    r = http.post(s.base + "/devboxes", data={**body, "csrf_token": token[:-2] + "xx"}, headers={"Origin": s.base},
                  allow_redirects=False)
    assert r.status_code == 403
    # the right token from another origin, or with no Origin/Referer at all
    r = http.post(s.base + "/devboxes", data=body, headers={"Origin": "http://evil.example"}, allow_redirects=False)
    assert r.status_code == 403
    r = http.post(s.base + "/devboxes", data=body, allow_redirects=False)
    assert r.status_code == 403
    r = http.post(s.base + "/logout", data={}, headers={"Origin": s.base}, allow_redirects=False)
    assert r.status_code == 403
    # cross-origin sign-in is refused too (login CSRF)
    other = requests.Session()
    login = other.get(s.base + "/login", timeout=10)
    r = other.post(s.base + "/login", data={"csrf_token": form_token(login.text), "provider_token": s.token},
                   headers={"Origin": "http://evil.example"}, allow_redirects=False)
    assert r.status_code == 403 and "devbox_session" not in other.cookies
    r = requests.post(s.base + "/login", data={"provider_token": s.token}, headers={"Origin": s.base},
                      allow_redirects=False)
    assert r.status_code == 403 and "devbox_session" not in r.cookies
    assert len(s.request("GET", "/api/v1/devboxes").json()["devboxes"]) == before
    # control: the same request with token and Origin is accepted
    r = http.post(s.base + "/devboxes", data=body, headers={"Origin": s.base}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"].startswith("/devboxes/dbx_")
    devbox_id = r.headers["Location"].split("/")[2].split("?")[0]
    # destroy needs the confirmation box, server-side too
    r = http.post(s.base + f"/devboxes/{devbox_id}/destroy", data={"csrf_token": token}, headers={"Origin": s.base},
                  allow_redirects=False)
    assert r.status_code == 422 and 'id="err-confirm"' in r.text
    assert s.get(devbox_id)["state"] != "destroyed"
    r = http.post(s.base + f"/devboxes/{devbox_id}/destroy", data={"csrf_token": token, "confirm": "on"},
                  headers={"Origin": s.base}, allow_redirects=False)
    assert r.status_code == 303 and s.get(devbox_id)["state"] == "destroyed"
    # the JSON endpoints need the cookie and answer the API's error shape
    r = requests.get(s.base + "/dashboard/api/devboxes", timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert http.get(s.base + "/dashboard/api/devboxes", timeout=10).status_code == 200
    # Secure cookies under TLS (a proxy saying X-Forwarded-Proto: https)
    r = requests.get(s.base + "/login", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert "; Secure" in r.headers["Set-Cookie"] and "HttpOnly" in r.headers["Set-Cookie"]
    assert "; Secure" not in requests.get(s.base + "/login", timeout=10).headers["Set-Cookie"]
    # security headers
    h = http.get(s.base + "/", timeout=10).headers
    assert "default-src 'self'" in h["Content-Security-Policy"] and h["X-Frame-Options"] == "DENY"


def test_github_return_without_cookie_hops_once(dash):
    s = dash
    # SameSite=Strict is not sent on a navigation GitHub started: one hop from our own page
    r = requests.get(s.base + "/account?github=connected&login=alice", allow_redirects=False, timeout=10)
    assert r.status_code == 200
    target = re.search(r'content="0;url=([^"]+)"', r.text).group(1).replace("&amp;", "&")
    assert target == "/account?hop=1&github=connected&login=alice"
    # after the hop, still no session: sign in
    r = requests.get(s.base + target, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"] == "/login"
    # with a session, a crafted outcome is not echoed
    http = sign_in_requests(s.base, s.token)
    page = http.get(s.base + "/account?github=connected&login=<b>x</b>", timeout=10).text
    assert "GitHub connected as" not in page and "<b>x</b>" not in page
    assert "GitHub connected as alice." in http.get(s.base + "/account?github=connected&login=alice", timeout=10).text


def test_another_users_devbox_is_404(dash, browser):
    s, b = dash, browser
    bobs = s.create({"name": "bobs-box"}, bearer=bearer("bob"))
    sign_in(b, s, s.token, bearer("alice"))
    b.get(s.base + f"/devboxes/{bobs['id']}")
    assert b.find("h1").text == "Not found"
    b.shot("10-not-found")
    assert "bobs-box" not in b.driver.page_source
    http = sign_in_requests(s.base, s.token, bearer("alice"))
    assert http.get(s.base + f"/devboxes/{bobs['id']}", timeout=10).status_code == 404
    assert http.get(s.base + f"/dashboard/api/devboxes/{bobs['id']}", timeout=10).status_code == 404
    token = form_token(http.get(s.base + "/", timeout=10).text)
    r = http.post(s.base + f"/devboxes/{bobs['id']}/destroy", data={"csrf_token": token, "confirm": "on"},
                  headers={"Origin": s.base}, allow_redirects=False)
    assert r.status_code == 404
    assert s.get(bobs["id"], bearer=bearer("bob"))["state"] != "destroyed"
    assert bobs["id"] not in http.get(s.base + "/", timeout=10).text
    s.request("DELETE", f"/api/v1/devboxes/{bobs['id']}", bearer=bearer("bob"))


def test_network_policy_is_shown_and_changed_through_the_form(dash, browser):
    s, b = dash, browser
    dora = bearer("dora")
    d = s.create({"name": "dash-net", "network": {"egress": "deny_all", "allow": ["pypi.org"]}}, bearer=dora)
    path = f"/api/v1/devboxes/{d['id']}/network"
    try:
        assert s.wait_state(d["id"], bearer=dora)["state"] == "ready"
        sign_in(b, s, s.token, dora)
        b.get(s.base + f"/devboxes/{d['id']}")
        # Shown as stored, and the form starts from it.
        assert b.find("#network-egress-shown").text.startswith("deny all")
        assert b.find("#network-allow-shown").text == "pypi.org"
        assert b.find("#network-deny-shown").text == "none"
        assert b.find("#network_egress").get_attribute("value") == "deny_all"
        assert b.find("#network_allow").get_attribute("value") == "pypi.org"
        assert b.find('label[for="network_allow"]').text.startswith("Allow")

        # Change it: a deny-list; blank lines and surrounding spaces do not count.
        Select(b.find("#network_egress")).select_by_value("allow_all")
        b.type("#network_allow", "")
        b.type("#network_deny", "198.51.100.0/24\n\n  *.Example.org  \nevil.example.com")
        b.submit("#save-network")
        assert b.path() == f"/devboxes/{d['id']}?notice=network_saved#network", b.path()
        want = {"egress": "allow_all", "allow": [], "deny": ["198.51.100.0/24", "*.example.org", "evil.example.com"]}
        assert s.request("GET", path, bearer=dora).json() == want
        assert b.find("#network-egress-shown").text.startswith("allow all")
        assert b.find("#network-deny-shown").text.split("\n") == want["deny"]
        assert b.find("#network_deny").get_attribute("value") == "\n".join(want["deny"])
        b.shot("11-devbox-network")

        # A bad entry: the error sits next to its textarea naming the line; the draft is kept;
        # nothing changed.
        Select(b.find("#network_egress")).select_by_value("deny_all")
        b.type("#network_allow", "api.example.com\n\n10.0.0.0/8")
        b.submit("#save-network")
        err = b.find("#err-network_allow")
        assert err.text.startswith("Line 3: ") and "10.0.0.0/8" in err.text, err.text
        assert b.find("#network_allow").get_attribute("aria-invalid") == "true"
        assert b.find("#network_allow").get_attribute("aria-describedby") == "err-network_allow"
        assert b.find("#network_allow").get_attribute("value") == "api.example.com\n\n10.0.0.0/8"
        assert b.find("#network_egress").get_attribute("value") == "deny_all"
        assert not b.find_all("#err-network_deny")
        assert s.request("GET", path, bearer=dora).json() == want
        b.shot("12-devbox-network-error")
        # One in the deny list: its own textarea.
        b.type("#network_allow", "")
        b.type("#network_deny", "169.254.169.254")
        b.submit("#save-network")
        assert b.find("#err-network_deny").text.startswith("Line 1: ")
        assert not b.find_all("#err-network_allow")
        assert s.request("GET", path, bearer=dora).json() == want

        # The form is protected like the others: no CSRF token, another origin, no Origin:
        # refused and nothing changed; another user's devbox is a 404.
        http = sign_in_requests(s.base, s.token, dora)
        token = form_token(http.get(s.base + f"/devboxes/{d['id']}", timeout=10).text)
        body = {"csrf_token": token, "egress": "deny_all", "allow": "pypi.org", "deny": ""}
        url = s.base + f"/devboxes/{d['id']}/network"
        r = http.post(url, data={**body, "csrf_token": ""}, headers={"Origin": s.base}, allow_redirects=False)
        assert r.status_code == 403
        r = http.post(url, data=body, headers={"Origin": "http://evil.example"}, allow_redirects=False)
        assert r.status_code == 403
        r = http.post(url, data=body, allow_redirects=False)
        assert r.status_code == 403
        alice = sign_in_requests(s.base, s.token, bearer("alice"))
        r = alice.post(url, data={**body, "csrf_token": form_token(alice.get(s.base + "/", timeout=10).text)},
                       headers={"Origin": s.base}, allow_redirects=False)
        assert r.status_code == 404
        assert s.request("GET", path, bearer=dora).json() == want
        # control: with the token and our Origin it is accepted
        r = http.post(url, data=body, headers={"Origin": s.base}, allow_redirects=False)
        assert r.status_code == 303, r.text
        assert s.request("GET", path, bearer=dora).json() == {"egress": "deny_all", "allow": ["pypi.org"], "deny": []}
    finally:
        s.request("DELETE", f"/api/v1/devboxes/{d['id']}", bearer=dora)
    # A destroyed devbox shows its last policy and no form.
    b.get(s.base + f"/devboxes/{d['id']}")
    assert b.find("#network-allow-shown").text == "pypi.org"
    assert not b.find_all("#network-form")


def session_rows(s: Server) -> list[tuple]:
    con = sqlite3.connect(os.path.join(s.data_dir, "devbox.sqlite"))
    try:
        return con.execute("SELECT id_hash, user_id, expires_at FROM dashboard_sessions").fetchall()
    finally:
        con.close()


def test_sessions_survive_a_restart_end_with_the_token_and_the_jwt(fresh_server):
    s = fresh_server(env={"DEVBOX_USER_JWT_SECRET": JWT_SECRET}).start()
    second = s.create_token("default")
    http = sign_in_requests(s.base, second)
    cookie = http.cookies["devbox_session"]
    rows = session_rows(s)
    assert [r[0] for r in rows] == [hashlib.sha256(cookie.encode()).hexdigest()]
    s.stop()
    s.start()
    assert http.get(s.base + "/", allow_redirects=False, timeout=10).status_code == 200
    # a user token's exp bounds the session
    short = sign_in_requests(s.base, s.token, bearer("dora", ttl=90))
    assert short.get(s.base + "/account", timeout=10).status_code == 200
    dora = [r for r in session_rows(s) if r[0] == hashlib.sha256(short.cookies["devbox_session"].encode()).hexdigest()]
    expires = calendar.timegm(time.strptime(dora[0][2][:19], "%Y-%m-%d %H:%M:%S"))
    assert expires <= time.time() + 91
    # revoking the provider token ends its dashboard sessions, and only those
    con = sqlite3.connect(os.path.join(s.data_dir, "devbox.sqlite"))
    tid = con.execute("SELECT id FROM provider_tokens WHERE token_hash = ?",
                      (hashlib.sha256(second.encode()).hexdigest(),)).fetchone()[0]
    con.close()
    s.cli("token", "revoke", "--data-dir", s.data_dir, tid)
    r = http.get(s.base + "/", allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"] == "/login"
    assert short.get(s.base + "/", allow_redirects=False, timeout=10).status_code == 200
    # signing out deletes the row
    token = form_token(short.get(s.base + "/", timeout=10).text)
    r = short.post(s.base + "/logout", data={"csrf_token": token}, headers={"Origin": s.base}, allow_redirects=False)
    assert r.status_code == 303
    assert session_rows(s) == []


def test_github_connect_grants_picker_disconnect(fresh_server, browser):
    from fake_github import FakeGitHub, build_simple_repo
    fake = FakeGitHub(page_size=2).start()
    try:
        fake.add_user("alice", 1001)
        fake.add_org("acme", ["alice"])
        fake.add_org("globex", ["alice"])
        fake.add_repo("alice/private-app", private=True)
        app_sha = build_simple_repo(fake, "alice/private-app", "private app\n")
        fake.add_repo("acme/service", private=True)
        fake.add_repo("globex/secret", private=True)
        fake.authorize_as = "alice"
        s = fresh_server(env={
            "DEVBOX_USER_JWT_SECRET": JWT_SECRET,
            "DEVBOX_GITHUB_CLIENT_ID": fake.client_id,
            "DEVBOX_GITHUB_CLIENT_SECRET": fake.client_secret,
            "DEVBOX_GITHUB_URL": fake.base,
            "DEVBOX_GITHUB_API_URL": fake.api_base,
        })
        # no DEVBOX_OAUTH_REDIRECT_ALLOWLIST: the dashboard's own /account is implicitly allowed
        s.extra_env["DEVBOX_PUBLIC_URL"] = s.base
        s.start()
        b = browser
        sign_in(b, s, s.token, bearer("gina"))
        b.get(s.base + "/account")
        assert b.find("#github-not-connected")
        b.submit("#github-connect")
        b.wait_for("#github-login", timeout=30)
        assert b.path().startswith("/account?github=connected")
        assert b.find("#github-login").text == "alice"
        assert "GitHub connected as alice." in b.find(".notice").text
        assert not b.find("#org-acme").is_selected() and not b.find("#org-globex").is_selected()
        b.find("#org-acme").click()
        b.submit("#save-org-grants")
        assert b.find("#org-acme").is_selected() and not b.find("#org-globex").is_selected()
        orgs = s.request("GET", "/api/v1/integrations/github/orgs", bearer=bearer("gina")).json()["orgs"]
        assert {o["login"]: o["granted"] for o in orgs} == {"acme": True, "globex": False}
        b.shot("11-account-github")
        # The create form offers the reachable repositories as a picker.
        b.get(s.base + "/devboxes/new")
        options = [o.get_attribute("value") for o in b.find_all("datalist#github-repos option")]
        assert "alice/private-app" in options and "acme/service" in options and "globex/secret" not in options
        assert b.find("#repo_full_name_0").get_attribute("list") == "github-repos"
        b.shot("12-create-with-picker")
        # Create with a picked private repository: the page shows its clone status and commit.
        b.type("#name", "with-repo")
        b.type("#repo_full_name_0", "alice/private-app")
        b.type("#repo_path_0", "/workspace/app")
        b.submit("#create")
        devbox_id = re.match(r"^/devboxes/(dbx_[a-z0-9]+)", b.path()).group(1)
        try:
            b.wait_text("#devbox-state", "ready", timeout=180)
            b.wait_text('tr[data-repo="0"] [data-repo-status]', "cloned", timeout=30)
            assert b.find('tr[data-repo="0"] [data-repo-commit]').text == app_sha[:12]
            assert "/workspace/app" in b.find('tr[data-repo="0"]').text
            b.shot("13-devbox-with-repository")
        finally:
            s.request("DELETE", f"/api/v1/devboxes/{devbox_id}", bearer=bearer("gina"))
        b.get(s.base + "/account")
        b.submit("#github-disconnect")
        assert b.find("#github-not-connected")
        assert s.request("GET", "/api/v1/integrations/github/connection", bearer=bearer("gina")).json() is None
        for page in b.pages:
            for t in fake.issued:
                assert t not in page
    finally:
        fake.stop()
