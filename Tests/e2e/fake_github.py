"""A GitHub-compatible server for tests, on 127.0.0.1.

- OAuth web flow: GET /login/oauth/authorize (approves at once as `authorize_as` and
  redirects to redirect_uri with code and state), POST /login/oauth/access_token
  (form body; JSON answer with Accept: application/json; a bad code is 200 {"error": ...}
  as on GitHub).
- REST under `api_prefix` (GitHub Enterprise Server style, /api/v3): GET /user,
  /user/repos and /user/orgs with Link pagination (page size capped at `page_size`),
  GET /repos/{owner}/{name}, DELETE /applications/{client_id}/grant (basic auth
  client_id:client_secret) which revokes every token of that user for the app.
- Smart-HTTP git: `git http-backend` as a CGI at /{owner}/{name}.git/...; private
  repositories demand `Authorization: Basic` whose password is a live token of a user
  who can see the repository (401 with WWW-Authenticate otherwise), public ones are
  served to anyone. A push (receive-pack, its advertisement included) needs a live token
  of the owner, a collaborator or a member of the owning organisation (401 without a
  token, 403 with one that may not write), as GitHub does.
"""
from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Fake Author", "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Fake Author", "GIT_COMMITTER_EMAIL": "author@example.com",
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent", "LANG": "C",
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
}


def git(*args: str, cwd: str | None = None, env: dict | None = None) -> str:
    e = dict(GIT_ENV)
    if env:
        e.update(env)
    return subprocess.run(["git", *args], cwd=cwd, env=e, check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class Repo:
    id: int
    owner: str
    name: str
    private: bool
    default_branch: str = "main"
    collaborators: set = field(default_factory=set)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class FakeGitHub:
    def __init__(self, client_id: str = "Iv1.fakeclientid", client_secret: str | None = None, page_size: int = 2,
                 api_prefix: str = "/api/v3"):
        self.client_id = client_id
        self.client_secret = client_secret or "fake-secret-" + secrets.token_hex(8)
        self.page_size = page_size
        self.api_prefix = api_prefix
        self.tmp = tempfile.mkdtemp(prefix="fake-github-")
        self.git_root = os.path.join(self.tmp, "git")
        os.makedirs(self.git_root)
        self.users: dict[str, int] = {}
        self.orgs: dict[str, dict] = {}
        self.repos: dict[str, Repo] = {}
        self.codes: dict[str, dict] = {}
        self.tokens: dict[str, str] = {}  # token -> login (live)
        self.issued: list[str] = []  # every token ever issued
        self.revoked: list[str] = []
        self.requests: list[tuple[str, str]] = []  # (method, path with query)
        self.git_requests: list[dict] = []
        self.authorize_as = "alice"
        self.fail_repo_lookups = 0  # answer this many GET /repos/{owner}/{name} with 503
        self.redirect_api = False  # answer GET /user with a redirect to /elsewhere
        self.elsewhere: list[dict] = []  # headers of requests that followed such a redirect
        self.lock = threading.Lock()
        self.next_id = 5000
        self.httpd: ThreadingHTTPServer | None = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> "FakeGitHub":
        fake = self

        class Handler(FakeHandler):
            pass

        Handler.fake = fake
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.api_base = self.base + self.api_prefix
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- world -----------------------------------------------------------------------
    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def add_user(self, login: str, uid: int | None = None) -> None:
        self.users[login] = uid or self._id()

    def add_org(self, login: str, members: list[str]) -> None:
        self.orgs[login] = {"id": self._id(), "members": set(members)}

    def add_repo(self, full_name: str, private: bool, collaborators=()) -> Repo:
        owner, name = full_name.split("/")
        r = Repo(id=self._id(), owner=owner, name=name, private=private, collaborators=set(collaborators))
        self.repos[full_name.lower()] = r
        return r

    def git_dir(self, full_name: str) -> str:
        return os.path.join(self.git_root, full_name + ".git")

    def publish(self, full_name: str, work_tree: str) -> None:
        """Makes a bare copy of a work repository servable at /{full_name}.git."""
        dest = self.git_dir(full_name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        git("clone", "--quiet", "--bare", work_tree, dest)
        git("config", "http.uploadpack", "true", cwd=dest)
        # One pack, as a real server keeps: clones reuse it instead of compressing loose objects.
        git("repack", "-a", "-d", "-q", cwd=dest)

    def token_for(self, login: str) -> str:
        """Issues a token directly (what a completed OAuth flow would give)."""
        t = "gho_" + secrets.token_hex(18)
        with self.lock:
            self.tokens[t] = login
            self.issued.append(t)
        return t

    # -- visibility --------------------------------------------------------------------
    def owner_type(self, owner: str) -> str:
        return "Organization" if owner in self.orgs else "User"

    def can_see(self, login: str | None, repo: Repo) -> bool:
        if not repo.private:
            return True
        if login is None:
            return False
        if repo.owner == login or login in repo.collaborators:
            return True
        org = self.orgs.get(repo.owner)
        return bool(org and login in org["members"])

    def can_push(self, login: str | None, repo: Repo) -> bool:
        """Write access: the owner, a collaborator, a member of the owning organisation."""
        if login is None:
            return False
        if repo.owner == login or login in repo.collaborators:
            return True
        org = self.orgs.get(repo.owner)
        return bool(org and login in org["members"])

    def ref(self, full_name: str, ref: str) -> str | None:
        """The commit a ref of a served repository points at (None: no such ref)."""
        try:
            return git("rev-parse", "--verify", "--quiet", ref, cwd=self.git_dir(full_name))
        except subprocess.CalledProcessError:
            return None

    def listed_repos(self, login: str) -> list[Repo]:
        """What /user/repos lists: owned, collaborator, and member organisations' repositories."""
        out = []
        for r in self.repos.values():
            org = self.orgs.get(r.owner)
            if r.owner == login or login in r.collaborators or (org and login in org["members"]):
                out.append(r)
        return sorted(out, key=lambda r: r.full_name.lower())

    def repo_json(self, r: Repo) -> dict:
        owner_id = self.orgs[r.owner]["id"] if r.owner in self.orgs else self.users.get(r.owner, 0)
        return {
            "id": r.id, "node_id": f"R_{r.id}", "name": r.name, "full_name": r.full_name, "private": r.private,
            "owner": {"login": r.owner, "id": owner_id, "type": self.owner_type(r.owner)},
            "html_url": f"{self.base}/{r.full_name}", "description": None, "fork": False,
            "url": f"{self.api_base}/repos/{r.full_name}", "clone_url": f"{self.base}/{r.full_name}.git",
            "default_branch": r.default_branch, "visibility": "private" if r.private else "public",
        }


class FakeHandler(BaseHTTPRequestHandler):
    fake: FakeGitHub
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):  # quiet
        pass

    # -- helpers -----------------------------------------------------------------------
    def send_json(self, status: int, body, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def token_login(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        parts = auth.split(" ", 1)
        if len(parts) == 2 and parts[0].lower() in ("bearer", "token"):
            with self.fake.lock:
                return self.fake.tokens.get(parts[1].strip())
        return None

    def bad_credentials(self) -> None:
        self.send_json(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest",
                             "status": "401"})

    # -- routing -----------------------------------------------------------------------
    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, method: str) -> None:
        f = self.fake
        url = urlsplit(self.path)
        with f.lock:
            f.requests.append((method, self.path))
        path = url.path
        if path == "/elsewhere":
            with f.lock:
                f.elsewhere.append(dict(self.headers))
            return self.send_json(200, {"login": "mallory", "id": 666})
        if re.match(r"^/[^/]+/[^/]+\.git(/.*)?$", path):
            return self.git_http(method, url)
        if method == "GET" and path == "/login/oauth/authorize":
            return self.authorize(parse_qs(url.query))
        if method == "POST" and path == "/login/oauth/access_token":
            return self.access_token()
        if not path.startswith(f.api_prefix + "/"):
            return self.send_json(404, {"message": "Not Found"})
        api = path[len(f.api_prefix):]
        q = parse_qs(url.query)
        if method == "DELETE":
            m = re.match(r"^/applications/([^/]+)/grant$", api)
            if m:
                return self.revoke_grant(m.group(1))
            return self.send_json(404, {"message": "Not Found"})
        if method != "GET":
            return self.send_json(404, {"message": "Not Found"})
        m = re.match(r"^/repos/([^/]+)/([^/]+)$", api)
        if m:
            with f.lock:
                failing = f.fail_repo_lookups > 0
                f.fail_repo_lookups -= 1 if failing else 0
            if failing:
                return self.send_json(503, {"message": "Service Unavailable"})
            return self.repo(m.group(1), m.group(2))
        if api == "/user" and f.redirect_api:
            self.send_response(302)
            self.send_header("Location", f.base + "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        login = self.token_login()
        if login is None:
            return self.bad_credentials()
        if api == "/user":
            return self.send_json(200, {"login": login, "id": f.users[login], "node_id": f"U_{f.users[login]}",
                                        "type": "User", "site_admin": False, "name": login.title()},
                                  {"X-OAuth-Scopes": "read:org, repo", "X-Accepted-OAuth-Scopes": ""})
        if api == "/user/repos":
            return self.paginate(api, q, [f.repo_json(r) for r in f.listed_repos(login)])
        if api == "/user/orgs":
            orgs = sorted((o for o, d in f.orgs.items() if login in d["members"]), key=str.lower)
            return self.paginate(api, q, [{"login": o, "id": f.orgs[o]["id"], "node_id": f"O_{f.orgs[o]['id']}",
                                           "url": f"{f.api_base}/orgs/{o}", "description": None} for o in orgs])
        return self.send_json(404, {"message": "Not Found"})

    # -- OAuth -------------------------------------------------------------------------
    def authorize(self, q: dict) -> None:
        f = self.fake
        if q.get("client_id", [""])[0] != f.client_id:
            return self.send_json(404, {"message": "unknown client_id"})
        redirect = q.get("redirect_uri", [""])[0]
        state = q.get("state", [""])[0]
        code = secrets.token_hex(10)
        with f.lock:
            f.codes[code] = {"login": f.authorize_as, "redirect_uri": redirect, "scope": q.get("scope", [""])[0],
                             "at": time.time()}
        sep = "&" if "?" in redirect else "?"
        self.send_response(302)
        self.send_header("Location", redirect + sep + urlencode({"code": code, "state": state}))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def access_token(self) -> None:
        f = self.fake
        form = {k: v[0] for k, v in parse_qs(self.read_body().decode()).items()}
        if "application/json" not in self.headers.get("Accept", ""):
            return self.send_json(406, {"message": "this fake answers JSON only"})
        if form.get("client_id") != f.client_id or form.get("client_secret") != f.client_secret:
            return self.send_json(200, {"error": "incorrect_client_credentials",
                                        "error_description": "The client_id and/or client_secret passed are incorrect."})
        with f.lock:
            grant = f.codes.pop(form.get("code", ""), None)
        if grant is None or time.time() - grant["at"] > 600:
            return self.send_json(200, {"error": "bad_verification_code",
                                        "error_description": "The code passed is incorrect or expired.",
                                        "error_uri": "https://docs.github.com/apps/troubleshooting"})
        if form.get("redirect_uri") and form["redirect_uri"] != grant["redirect_uri"]:
            return self.send_json(200, {"error": "redirect_uri_mismatch"})
        token = f.token_for(grant["login"])
        self.send_json(200, {"access_token": token, "token_type": "bearer", "scope": "read:org,repo"})

    def revoke_grant(self, client_id: str) -> None:
        f = self.fake
        auth = self.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{f.client_id}:{f.client_secret}".encode()).decode()
        if client_id != f.client_id or auth != expected:
            return self.send_json(401, {"message": "Requires authentication"})
        try:
            token = json.loads(self.read_body() or b"{}").get("access_token", "")
        except ValueError:
            return self.send_json(422, {"message": "Invalid request"})
        with f.lock:
            login = f.tokens.get(token)
            if login is None:
                return self.send_json(404, {"message": "Not Found"})
            for t, l in list(f.tokens.items()):
                if l == login:
                    del f.tokens[t]
                    f.revoked.append(t)
        self.send_response(204)
        self.end_headers()

    # -- REST --------------------------------------------------------------------------
    def paginate(self, api: str, q: dict, items: list) -> None:
        f = self.fake
        per_page = min(int(q.get("per_page", ["30"])[0]), 100, f.page_size)
        page = max(1, int(q.get("page", ["1"])[0]))
        last = max(1, (len(items) + per_page - 1) // per_page)
        chunk = items[(page - 1) * per_page: page * per_page]

        def link(p: int) -> str:
            params = {k: v[0] for k, v in q.items()}
            params["page"] = str(p)
            return f"<{f.api_base}{api}?{urlencode(params)}>"

        rels = []
        if page < last:
            rels += [f'{link(page + 1)}; rel="next"', f'{link(last)}; rel="last"']
        if page > 1:
            rels += [f'{link(1)}; rel="first"', f'{link(page - 1)}; rel="prev"']
        self.send_json(200, chunk, {"Link": ", ".join(rels)} if rels else None)

    def repo(self, owner: str, name: str) -> None:
        f = self.fake
        r = f.repos.get(f"{owner}/{name}".lower())
        auth = self.headers.get("Authorization")
        login = self.token_login()
        if auth and login is None:
            return self.bad_credentials()
        if r is None or not f.can_see(login, r):
            return self.send_json(404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
        self.send_json(200, f.repo_json(r))

    # -- git smart HTTP ----------------------------------------------------------------
    def git_http(self, method: str, url) -> None:
        f = self.fake
        m = re.match(r"^/([^/]+)/([^/]+)\.git(/.*)?$", url.path)
        full_name = f"{m.group(1)}/{m.group(2)}"
        rest = m.group(3) or ""
        auth = self.headers.get("Authorization")
        record = {"repo": full_name, "path": rest, "authorization": auth}
        with f.lock:
            f.git_requests.append(record)
        r = f.repos.get(full_name.lower())
        if r is None or not os.path.isdir(f.git_dir(r.full_name)):
            return self.send_json(404, {"message": "Repository not found."})
        login = None
        if auth and auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                password = ""
            with f.lock:
                login = f.tokens.get(password)
        push = "git-receive-pack" in rest or "git-receive-pack" in url.query
        record["push"] = push
        if push and not f.can_push(login, r):
            # As GitHub: a push needs a live token with write access (anonymous: 401, asking for one).
            if login is None:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="GitHub"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                record["status"] = 401
                return
            record["status"] = 403
            return self.send_json(403, {"message": f"Permission to {r.full_name}.git denied to {login}."})
        if r.private and not f.can_see(login, r):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="GitHub"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            record["status"] = 401
            return
        record["status"] = 200
        body = self.read_body() if method == "POST" else b""
        env = {
            "GIT_PROJECT_ROOT": f.git_root, "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": f"/{r.full_name}.git{rest}",
            "QUERY_STRING": url.query, "REQUEST_METHOD": method, "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
            "PATH": GIT_ENV["PATH"], "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
        }
        if push:
            env["REMOTE_USER"] = login  # http-backend serves receive-pack to an authenticated user
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        proc = subprocess.Popen(["git", "http-backend"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)

        def feed():
            try:
                proc.stdin.write(body)
            except BrokenPipeError:
                pass
            finally:
                proc.stdin.close()

        threading.Thread(target=feed, daemon=True).start()
        status, headers = 200, []
        while True:
            line = proc.stdout.readline()
            if not line or line in (b"\r\n", b"\n"):
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "status":
                status = int(v.strip().split()[0])
            else:
                headers.append((k.strip(), v.strip()))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        while True:
            chunk = proc.stdout.read1(1 << 16)
            if not chunk:
                break
            self.wfile.write(chunk)
        proc.wait()


def build_app_repo(fake: FakeGitHub, full_name: str) -> dict:
    """A repository with history: main (3 commits), branch feature (+1), annotated tag
    v1.0 at main~1. Returns the interesting commit ids."""
    work = tempfile.mkdtemp(prefix="fake-repo-", dir=fake.tmp)
    git("init", "--quiet", "-b", "main", work)
    with open(os.path.join(work, "README.md"), "w") as fh:
        fh.write("version 1\n")
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "first", cwd=work)
    first = git("rev-parse", "HEAD", cwd=work)
    os.makedirs(os.path.join(work, "src"))
    with open(os.path.join(work, "src", "app.py"), "w") as fh:
        fh.write("print('hello')\n")
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "second", cwd=work)
    second = git("rev-parse", "HEAD", cwd=work)
    git("tag", "-a", "v1.0", "-m", "release 1.0", cwd=work)
    with open(os.path.join(work, "README.md"), "w") as fh:
        fh.write("version 3\n")
    git("commit", "--quiet", "-am", "third", cwd=work)
    main = git("rev-parse", "HEAD", cwd=work)
    git("checkout", "--quiet", "-b", "feature", cwd=work)
    with open(os.path.join(work, "feature.txt"), "w") as fh:
        fh.write("feature work\n")
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "feature", cwd=work)
    feature = git("rev-parse", "HEAD", cwd=work)
    git("checkout", "--quiet", "main", cwd=work)
    fake.publish(full_name, work)
    shutil.rmtree(work, ignore_errors=True)
    return {"first": first, "second": second, "main": main, "feature": feature}


def build_simple_repo(fake: FakeGitHub, full_name: str, text: str = "hello\n") -> str:
    work = tempfile.mkdtemp(prefix="fake-repo-", dir=fake.tmp)
    git("init", "--quiet", "-b", "main", work)
    with open(os.path.join(work, "README.md"), "w") as fh:
        fh.write(text)
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "initial", cwd=work)
    sha = git("rev-parse", "HEAD", cwd=work)
    fake.publish(full_name, work)
    shutil.rmtree(work, ignore_errors=True)
    return sha
