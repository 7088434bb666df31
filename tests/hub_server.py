"""A small Hugging Face Hub-compatible HTTP server for the publish tests.

It speaks the subset of the Hub's HTTP API that `huggingface_hub` 2.x and `datasets` 5.x use to
create a dataset repo, commit to it (regular and git-LFS files), tag it and read it back at a
revision, so the tests run the real clients against it through `HF_ENDPOINT`. Like the Hub it
enforces the token on writes (and rejects a wrong one everywhere), keeps every commit immutable,
resolves branches, tags and pull-request refs (`refs/pr/N`) to commits, and answers errors with
the `X-Error-Code` header the client maps to its exception classes. Binds to 127.0.0.1 only.

Pull requests work as on the Hub: a commit with `?create_pr=1` opens discussion N whose ref
`refs/pr/N` holds the commit (on the given parent, or on the branch head) and leaves the branch
alone; later commits to `refs/pr/N` extend it; `.../discussions/N/merge` applies the PR's
changes onto its base branch as one new commit (409 when the branch changed the same files
since), then the PR is `merged`. `/api/validate-yaml` checks card metadata against the Hub's
vocabularies (tests/data/hub/README.md names their sources) and answers 400 with the Hub's
message when a value is not allowed.

Every request is recorded as a route template (`POST /api/{type}s/{repo}/commit/{rev}`), so a
test can fail loudly when a client upgrade needs a route this server does not know.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
INVALID_TOKEN = "Invalid credentials in Authorization header"


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Blob:
    """One file in a commit; `lfs_oid` is the sha256 for files stored through git-LFS."""

    data: bytes
    lfs_oid: str | None = None

    @property
    def oid(self) -> str:
        # The Hub reports an LFS file's git oid as the oid of its pointer file.
        if self.lfs_oid is None:
            return git_blob_oid(self.data)
        return git_blob_oid(LFS_POINTER.format(oid=self.lfs_oid, size=len(self.data)).encode())

    def entry(self, path: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "path": path, "oid": self.oid, "size": len(self.data)}
        if self.lfs_oid is not None:
            pointer = LFS_POINTER.format(oid=self.lfs_oid, size=len(self.data))
            entry["lfs"] = {"oid": self.lfs_oid, "size": len(self.data), "pointerSize": len(pointer)}
        return entry


@dataclass(frozen=True)
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, Blob]


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    # Discussion number -> pull request (numbers are shared with discussions on the Hub).
    pulls: dict[int, PullRequest] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        oid = self.branches.get(revision) or self.tags.get(revision)
        if oid is None and revision.startswith("refs/tags/"):
            oid = self.tags.get(revision.removeprefix("refs/tags/"))
        if oid is None and revision.startswith("refs/heads/"):
            oid = self.branches.get(revision.removeprefix("refs/heads/"))
        pr = re.fullmatch(r"refs/pr/(\d+)", revision)
        if oid is None and pr and int(pr.group(1)) in self.pulls:
            oid = self.pulls[int(pr.group(1))].head
        if oid is None and revision in self.commits:
            oid = revision
        return self.commits.get(oid) if oid else None

    def add_commit(self, parent: Commit | None, message: str, files: dict[str, Blob]) -> Commit:
        listing = sorted((path, blob.oid) for path, blob in files.items())
        digest = hashlib.sha1(
            json.dumps([parent.oid if parent else None, message, listing, len(self.commits)]).encode()
        ).hexdigest()
        commit = Commit(digest, parent.oid if parent else None, message, dict(files))
        self.commits[digest] = commit
        return commit


@dataclass
class PullRequest:
    num: int
    title: str
    base_branch: str
    # The commit the PR was opened on and its newest commit (`refs/pr/N`).
    base: str
    head: str
    status: str = "open"
    merge_commit: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclass
class HubState:
    """Everything the server knows; tests read it to check what landed on the 'Hub'."""

    token: str
    base_url: str = ""
    repos: dict[str, Repo] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)
    # Route templates hit, in order (one entry per request).
    routes: list[str] = field(default_factory=list)
    # Route template -> number of upcoming requests on it whose connection is dropped unanswered.
    drop_connection: dict[str, int] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get(f"{repo_type}/{repo_id}")
        if repo is None:
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def commit_count(self, repo_type: str, repo_id: str) -> int:
        return len(self.repo(repo_type, repo_id).commits)


Handler = Callable[["HubRequestHandler", dict[str, str]], None]
ROUTES: list[tuple[str, re.Pattern[str], str, Handler]] = []
_REPO = r"(?P<type>datasets|models|spaces)/(?P<repo>[^/]+/[^/]+)"


def route(method: str, pattern: str, template: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ROUTES.append((method, re.compile(f"^{pattern}$"), template, handler))
        return handler

    return register


class HubRequestHandler(BaseHTTPRequestHandler):
    server: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean; routes are recorded in HubState

    @property
    def state(self) -> HubState:
        return self.server.state

    # -- plumbing -------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        self.body = self._read_body()
        for route_method, pattern, template, handler in ROUTES:
            match = pattern.match(url.path)
            if match is None or method not in route_method.split("|"):
                continue
            with self.state.lock:
                self.state.routes.append(f"{method} {template}")
                drops = self.state.drop_connection.get(template, 0)
                if drops:
                    self.state.drop_connection[template] = drops - 1
            if drops:
                # A network failure between client and Hub: the request is never answered.
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            try:
                self._check_token()
                with self.state.lock:
                    handler(self, {k: unquote(v or "") for k, v in match.groupdict().items()})
            except HubError as exc:
                self._error(exc)
            except Exception as exc:  # a bug in this server: answer 500 rather than hang the client
                self._error(HubError(500, f"hub test server error: {type(exc).__name__}: {exc}"))
            return
        with self.state.lock:
            self.state.routes.append(f"{method} UNKNOWN {url.path}")
        self._error(HubError(404, f"unknown route {method} {url.path}"))

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _check_token(self) -> None:
        header = self.headers.get("Authorization")
        self.authenticated = header == f"Bearer {self.state.token}"
        if header is not None and not self.authenticated:
            raise HubError(401, INVALID_TOKEN)

    def _require_token(self) -> None:
        if not self.authenticated:
            raise HubError(401, "You must be authenticated to do this")

    def _readable(self, params: dict[str, str]) -> Repo:
        repo = self.state.repo(params["type"], params["repo"])
        if repo.private and not self.authenticated:
            raise HubError(404, f"Repository {params['repo']} not found", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        head: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _error(self, exc: HubError, extra: dict[str, Any] | None = None) -> None:
        headers = {"X-Error-Message": exc.message}
        if exc.code:
            headers["X-Error-Code"] = exc.code
        self._send(
            exc.status,
            json.dumps({"error": exc.message, **(extra or {})}).encode(),
            headers=headers,
            head=self.command == "HEAD",
        )

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")


# -- repositories -------------------------------------------------------------------------------
@route("POST", r"/api/repos/create", "/api/repos/create")
def create_repo(h: HubRequestHandler, _: dict[str, str]) -> None:
    h._require_token()
    payload = json.loads(h.body)
    repo_type = f"{payload.get('type') or 'model'}s"
    repo_id = f"{payload['organization']}/{payload['name']}"
    prefix = "" if repo_type == "models" else f"{repo_type}/"
    url = f"{h.state.base_url}/{prefix}{repo_id}"
    key = f"{repo_type}/{repo_id}"
    if key in h.state.repos:
        # The client reads `url` from the 409 body when exist_ok=True.
        h._error(HubError(409, "You already created this dataset repo"), {"url": url})
        return
    repo = Repo(repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")))
    initial = repo.add_commit(None, "initial commit", {".gitattributes": Blob(GITATTRIBUTES)})
    repo.branches["main"] = initial.oid
    h.state.repos[key] = repo
    h._json({"url": url, "name": repo_id})


@route("POST", r"/api/validate-yaml", "/api/validate-yaml")
def validate_yaml(h: HubRequestHandler, _: dict[str, str]) -> None:
    payload = json.loads(h.body)
    content = payload.get("content", "")
    metadata, problem = _front_matter(content)
    if problem is not None:
        h._send(400, f"Invalid metadata in README.md.\n- {problem}".encode(), "text/plain; charset=utf-8")
        return
    if metadata is None:
        h._json({"errors": [], "warnings": [{"message": "empty or missing yaml metadata in repo card"}]})
        return
    errors = card_metadata_errors(metadata, payload.get("repoType") or "model")
    if errors:
        message = "Invalid metadata in README.md.\n" + "\n".join(f"- {e}" for e in errors)
        h._send(400, message.encode(), "text/plain; charset=utf-8")
        return
    h._json({"errors": [], "warnings": []})


def _front_matter(content: str) -> tuple[dict[str, Any] | None, str | None]:
    """(metadata, None), (None, None) without a YAML block, or (None, problem) when it is not YAML."""
    import yaml

    match = re.match(r"^---\s*\n(.*?)\n---\s*(?:\n|$)", content, re.DOTALL)
    if match is None:
        return None, None
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        return None, f"YAML metadata is not valid YAML: {exc}"
    if data is None:
        return None, None
    if not isinstance(data, dict):
        return None, '"value" must be of type object'
    return data, None


def card_metadata_errors(metadata: dict[str, Any], repo_type: str) -> list[str]:
    """What the Hub's metadata schema refuses, in its Joi-style messages (`"license" must be one
    of [...]`). Keys outside the vocabularies (tags, configs, dataset_info) are free-form."""
    vocab = json.loads((Path(__file__).parent / "data" / "hub" / "card_vocabularies.json").read_text())
    errors: list[str] = []

    def one_of(key: str, value: Any, allowed: list[str]) -> None:
        values = value if isinstance(value, list) else [value]
        for i, item in enumerate(values):
            label = f"{key}[{i}]" if isinstance(value, list) else key
            if not isinstance(item, str):
                errors.append(f'"{label}" must be a string')
            elif item not in allowed:
                errors.append(f'"{label}" must be one of [{", ".join(allowed)}]')

    def string_list(key: str) -> Any:
        value = metadata.get(key)
        if value is not None and not isinstance(value, list | str):
            errors.append(f'"{key}" must be an array')
            return None
        return value

    if "license" in metadata:
        one_of("license", metadata["license"], vocab["licenses"])
        licenses = metadata["license"] if isinstance(metadata["license"], list) else [metadata["license"]]
        if "other" in licenses:
            name = metadata.get("license_name")
            if name is not None and not (isinstance(name, str) and re.fullmatch(r"[a-z0-9.-]+", name)):
                errors.append('"license_name" must only contain lowercase characters, numbers, "." and "-"')
    if repo_type != "dataset":
        return errors
    for key, allowed in (
        ("task_categories", vocab["task_categories"]),
        ("task_ids", vocab["task_ids"]),
        ("size_categories", vocab["size_categories"]),
        ("language_creators", vocab["creators"]["language"]),
        ("annotations_creators", vocab["creators"]["annotations"]),
        ("multilinguality", vocab["multilinguality"]),
    ):
        value = string_list(key)
        if value is not None:
            one_of(key, value, allowed)
    languages = string_list("language")
    for i, code in enumerate(languages if isinstance(languages, list) else [languages] if languages else []):
        if not (isinstance(code, str) and re.fullmatch(r"[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*|code", code)):
            errors.append(f'"language[{i}]" must be a valid language code (ISO 639-1, 639-2 or 639-3)')
    pwc = metadata.get("paperswithcode_id")
    if pwc is not None and not isinstance(pwc, str):
        errors.append('"paperswithcode_id" must be a string or null')
    for key in ("pretty_name", "license_details"):
        if key in metadata and not isinstance(metadata[key], str):
            errors.append(f'"{key}" must be a string')
    return errors


@route("GET", rf"/api/{_REPO}(?:/revision/(?P<rev>[^/]+))?", "/api/{type}s/{repo}/revision/{rev}")
def repo_info(h: HubRequestHandler, p: dict[str, str]) -> None:
    repo = h._readable(p)
    commit = h._commit(repo, p.get("rev") or "main")
    h._json(
        {
            "id": repo.repo_id,
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "lastModified": "2026-01-01T00:00:00.000Z",
            "createdAt": "2026-01-01T00:00:00.000Z",
            "siblings": [{"rfilename": path} for path in sorted(commit.files)],
        }
    )


@route("GET", rf"/api/{_REPO}/refs", "/api/{type}s/{repo}/refs")
def refs(h: HubRequestHandler, p: dict[str, str]) -> None:
    repo = h._readable(p)
    h._json(
        {
            "branches": [
                {"name": n, "ref": f"refs/heads/{n}", "targetCommit": o} for n, o in repo.branches.items()
            ],
            "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": o} for n, o in repo.tags.items()],
            "converts": [],
            **(
                {
                    "pullRequests": [
                        {"name": f"refs/pr/{n}", "ref": f"refs/pr/{n}", "targetCommit": pr.head}
                        for n, pr in sorted(repo.pulls.items())
                    ]
                }
                if h.query.get("include_prs", ["0"])[0] in ("1", "true")
                else {}
            ),
        }
    )


@route("GET", rf"/api/{_REPO}/commits/(?P<rev>[^/]+)", "/api/{type}s/{repo}/commits/{rev}")
def commits(h: HubRequestHandler, p: dict[str, str]) -> None:
    repo = h._readable(p)
    commit: Commit | None = h._commit(repo, p["rev"])
    history = []
    while commit is not None:
        history.append(
            {
                "id": commit.oid,
                "title": commit.message,
                "message": "",
                "authors": [],
                "date": "2026-01-01T00:00:00.000Z",
            }
        )
        commit = repo.commits.get(commit.parent) if commit.parent else None
    h._json(history)


# -- writing ------------------------------------------------------------------------------------
@route("POST", rf"/api/{_REPO}/preupload/(?P<rev>[^/]+)", "/api/{type}s/{repo}/preupload/{rev}")
def preupload(h: HubRequestHandler, p: dict[str, str]) -> None:
    h._require_token()
    repo = h.state.repo(p["type"], p["repo"])
    commit = h._commit(repo, p["rev"])
    answer = []
    for item in json.loads(h.body)["files"]:
        sample = base64.b64decode(item["sample"])
        lfs = item["path"].endswith(".parquet") or b"\0" in sample or item["size"] > 10 * 1024 * 1024
        existing = commit.files.get(item["path"])
        oid = None
        if existing is not None:
            oid = existing.lfs_oid if existing.lfs_oid is not None else git_blob_oid(existing.data)
        answer.append(
            {
                "path": item["path"],
                "uploadMode": "lfs" if lfs else "regular",
                "shouldIgnore": False,
                "oid": oid,
            }
        )
    h._json({"files": answer, "commitOid": commit.oid})


@route("POST", rf"/{_REPO}\.git/info/lfs/objects/batch", "/{type}s/{repo}.git/info/lfs/objects/batch")
def lfs_batch(h: HubRequestHandler, p: dict[str, str]) -> None:
    h._require_token()
    h.state.repo(p["type"], p["repo"])
    objects = []
    for obj in json.loads(h.body)["objects"]:
        answer: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
        if obj["oid"] not in h.state.lfs_objects:
            answer["actions"] = {"upload": {"href": f"{h.state.base_url}/lfs-upload/{obj['oid']}"}}
        objects.append(answer)
    h._send(
        200,
        json.dumps({"transfer": "basic", "objects": objects}).encode(),
        content_type="application/vnd.git-lfs+json",
    )


@route("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", "/lfs-upload/{oid}")
def lfs_upload(h: HubRequestHandler, p: dict[str, str]) -> None:
    # Like a presigned storage URL: no token, but the content must match the announced oid.
    if hashlib.sha256(h.body).hexdigest() != p["oid"]:
        raise HubError(400, "content does not match its sha256")
    h.state.lfs_objects[p["oid"]] = h.body
    h._send(200)


@route("POST", rf"/api/{_REPO}/commit/(?P<rev>[^/]+)", "/api/{type}s/{repo}/commit/{rev}")
def commit(h: HubRequestHandler, p: dict[str, str]) -> None:
    h._require_token()
    repo = h.state.repo(p["type"], p["repo"])
    revision = p["rev"]
    create_pr = h.query.get("create_pr", ["0"])[0] in ("1", "true")
    pr_ref = re.fullmatch(r"refs/pr/(\d+)", revision)
    lines = [json.loads(line) for line in h.body.decode().splitlines() if line.strip()]
    header = next((item["value"] for item in lines if item["key"] == "header"), {})
    expected = header.get("parentCommit")
    pull: PullRequest | None = None
    if pr_ref is not None:
        # A commit pushed to an open pull request's ref extends that pull request.
        pull = repo.pulls.get(int(pr_ref.group(1)))
        if pull is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        if pull.status != "open":
            raise HubError(403, f"Pull request #{pull.num} is {pull.status}; open a new one")
        parent = repo.commits[pull.head]
    else:
        branch = revision.removeprefix("refs/heads/")
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        parent = repo.commits[repo.branches[branch]]
        if create_pr and expected:
            # The Hub opens the pull request on the given parent, wherever the branch is now.
            if expected not in repo.commits:
                raise HubError(404, f"Invalid rev id: {expected}", "RevisionNotFound")
            parent = repo.commits[expected]
    if expected and not create_pr and expected != parent.oid:
        raise HubError(412, "A commit has happened since. Please refresh and try again.")
    files = dict(parent.files)
    message = header.get("summary", "")
    for item in lines:
        key, value = item["key"], item["value"]
        if key == "header":
            continue
        if key == "file":
            files[value["path"]] = Blob(base64.b64decode(value["content"]))
        elif key == "lfsFile":
            data = h.state.lfs_objects.get(value["oid"])
            if data is None or len(data) != value["size"]:
                raise HubError(422, f"LFS object {value['oid']} for {value['path']} was not uploaded")
            files[value["path"]] = Blob(data, lfs_oid=value["oid"])
        elif key == "deletedFile":
            if value["path"] not in files:
                raise HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
            del files[value["path"]]
        elif key == "deletedFolder":
            prefix = value["path"].rstrip("/") + "/"
            files = {k: v for k, v in files.items() if not k.startswith(prefix)}
        else:
            raise HubError(400, f"unknown commit operation {key!r}")
    new = repo.add_commit(parent, message, files)
    base = f"{h.state.base_url}/{p['type']}/{repo.repo_id}"
    if pull is not None:
        pull.head = new.oid
        pull.events.append(_event("commit", {"subject": message, "oid": new.oid}))
    elif create_pr:
        num = max(repo.pulls, default=0) + 1
        pull = PullRequest(num, message, revision.removeprefix("refs/heads/"), parent.oid, new.oid)
        pull.events.append(_event("commit", {"subject": message, "oid": new.oid}))
        repo.pulls[num] = pull
    else:
        repo.branches[revision.removeprefix("refs/heads/")] = new.oid
    h._json(
        {
            "success": True,
            "commitOid": new.oid,
            "commitUrl": f"{base}/commit/{new.oid}",
            "pullRequestUrl": f"{base}/discussions/{pull.num}" if pull is not None else None,
        }
    )


def _event(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": hashlib.sha1(json.dumps([kind, data]).encode()).hexdigest()[:24],
        "type": kind,
        "createdAt": "2026-01-01T00:00:00.000Z",
        "author": {"name": "test-user"},
        "data": data,
    }


def _discussion(repo: Repo, repo_type: str, pull: PullRequest) -> dict[str, Any]:
    return {
        "num": pull.num,
        "title": pull.title,
        "status": pull.status,
        "isPullRequest": True,
        "createdAt": "2026-01-01T00:00:00.000Z",
        "author": {"name": "test-user"},
        "repo": {"name": repo.repo_id, "type": repo_type.removesuffix("s")},
        "pinned": False,
        "numComments": 0,
    }


@route("GET", rf"/api/{_REPO}/discussions", "/api/{type}s/{repo}/discussions")
def discussions(h: HubRequestHandler, p: dict[str, str]) -> None:
    repo = h._readable(p)
    kind = h.query.get("type", ["all"])[0]
    status = h.query.get("status", ["all"])[0]
    page = int(h.query.get("p", ["0"])[0])
    found = [
        _discussion(repo, p["type"], pull)
        for pull in sorted(repo.pulls.values(), key=lambda pr: -pr.num)
        if kind in ("all", "pull_request") and status in ("all", pull.status)
    ]
    per_page = 50
    h._json(
        {
            "discussions": found[page * per_page : (page + 1) * per_page],
            "count": len(found),
            "start": page * per_page,
            "numItemsPerPage": per_page,
        }
    )


def _pull(h: HubRequestHandler, p: dict[str, str], repo: Repo) -> PullRequest:
    pull = repo.pulls.get(int(p["num"]))
    if pull is None:
        raise HubError(404, f"Discussion #{p['num']} not found", "EntryNotFound")
    return pull


def _conflicts(repo: Repo, pull: PullRequest) -> list[str]:
    """Files both the base branch (since the PR's base) and the PR changed, differently."""
    base, head = repo.commits[pull.base].files, repo.commits[pull.head].files
    tip = repo.commits[repo.branches[pull.base_branch]].files

    def changed(files: dict[str, Blob]) -> set[str]:
        return {path for path in set(base) | set(files) if base.get(path) != files.get(path)}

    both = changed(head) & changed(tip)
    return sorted(path for path in both if head.get(path) != tip.get(path))


@route("GET", rf"/api/{_REPO}/discussions/(?P<num>\d+)", "/api/{type}s/{repo}/discussions/{num}")
def discussion_details(h: HubRequestHandler, p: dict[str, str]) -> None:
    repo = h._readable(p)
    pull = _pull(h, p, repo)
    changes: dict[str, Any] = {"base": f"refs/heads/{pull.base_branch}"}
    if pull.merge_commit:
        changes["mergeCommitId"] = pull.merge_commit
    h._json(
        {
            **_discussion(repo, p["type"], pull),
            "events": pull.events,
            "changes": changes,
            "filesWithConflicts": _conflicts(repo, pull) if pull.status == "open" else [],
            "diff": None,
        }
    )


@route("POST", rf"/api/{_REPO}/discussions/(?P<num>\d+)/merge", "/api/{type}s/{repo}/discussions/{num}/merge")
def merge(h: HubRequestHandler, p: dict[str, str]) -> None:
    h._require_token()
    repo = h.state.repo(p["type"], p["repo"])
    pull = _pull(h, p, repo)
    if pull.status != "open":
        raise HubError(400, f"Pull request #{pull.num} is already {pull.status}")
    conflicts = _conflicts(repo, pull)
    if conflicts:
        raise HubError(409, f"Pull request #{pull.num} has conflicts in {', '.join(conflicts)}")
    base, head = repo.commits[pull.base].files, repo.commits[pull.head].files
    tip = repo.commits[repo.branches[pull.base_branch]]
    files = dict(tip.files)
    for path in set(base) | set(head):
        if path not in head:
            files.pop(path, None)
        elif base.get(path) != head[path]:
            files[path] = head[path]
    merged = repo.add_commit(tip, pull.title, files)
    repo.branches[pull.base_branch] = merged.oid
    pull.status, pull.merge_commit = "merged", merged.oid
    pull.events.append(_event("status-change", {"status": "merged"}))
    h._json({"newStatus": pull.events[-1]})


@route("POST", rf"/api/{_REPO}/tag/(?P<rev>[^/]+)", "/api/{type}s/{repo}/tag/{rev}")
def tag(h: HubRequestHandler, p: dict[str, str]) -> None:
    h._require_token()
    repo = h.state.repo(p["type"], p["repo"])
    target = h._commit(repo, p["rev"])
    name = json.loads(h.body)["tag"]
    if name in repo.tags:
        raise HubError(409, f"Tag {name} already exists")
    repo.tags[name] = target.oid
    h._json({"name": name, "ref": f"refs/tags/{name}", "targetCommit": target.oid})


# -- reading files ------------------------------------------------------------------------------
def _entries(commit: Commit, folder: str, recursive: bool) -> list[dict[str, Any]]:
    prefix = f"{folder}/" if folder else ""
    files: list[dict[str, Any]] = []
    folders: dict[str, list[str]] = {}
    for path in sorted(commit.files):
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix) :]
        parts = rest.split("/")
        for depth in range(1, len(parts)):
            if depth > 1 and not recursive:
                break
            folders.setdefault(prefix + "/".join(parts[:depth]), []).append(path)
        if recursive or len(parts) == 1:
            files.append(commit.files[path].entry(path))
    dirs = [
        {"type": "directory", "path": name, "oid": hashlib.sha1("\n".join(members).encode()).hexdigest()}
        for name, members in sorted(folders.items())
    ]
    return dirs + files


def _path_entry(commit: Commit, path: str) -> dict[str, Any] | None:
    path = path.strip("/")
    if path in commit.files:
        return commit.files[path].entry(path)
    members = [p for p in commit.files if p.startswith(path + "/")]
    if not members:
        return None
    return {
        "type": "directory",
        "path": path,
        "oid": hashlib.sha1("\n".join(sorted(members)).encode()).hexdigest(),
    }


@route("GET", rf"/api/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "/api/{type}s/{repo}/tree/{rev}/{path}")
def tree(h: HubRequestHandler, p: dict[str, str]) -> None:
    repo = h._readable(p)
    commit = h._commit(repo, p["rev"])
    folder = (p.get("path") or "").strip("/")
    if folder and not any(path.startswith(folder + "/") for path in commit.files):
        raise HubError(404, f"Entry not found: {folder}", "EntryNotFound")
    recursive = h.query.get("recursive", ["false"])[0].lower() in ("1", "true")
    h._json(_entries(commit, folder, recursive))


@route("POST", rf"/api/{_REPO}/paths-info/(?P<rev>[^/]+)", "/api/{type}s/{repo}/paths-info/{rev}")
def paths_info(h: HubRequestHandler, p: dict[str, str]) -> None:
    repo = h._readable(p)
    commit = h._commit(repo, p["rev"])
    if h.headers.get("Content-Type", "").startswith("application/json"):
        paths = json.loads(h.body)["paths"]
    else:
        paths = parse_qs(h.body.decode())["paths"]
    entries = [e for e in (_path_entry(commit, path) for path in paths) if e is not None]
    h._json(entries)


@route("GET|HEAD", rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "/{type}s/{repo}/resolve/{rev}/{path}")
def resolve(h: HubRequestHandler, p: dict[str, str]) -> None:
    repo = h._readable(p)
    commit = h._commit(repo, p["rev"])
    blob = commit.files.get(p["path"])
    if blob is None:
        raise HubError(404, f"Entry not found: {p['path']}", "EntryNotFound")
    etag = blob.lfs_oid or blob.oid
    headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
    if blob.lfs_oid is not None:
        headers["X-Linked-Etag"] = f'"{etag}"'
        headers["X-Linked-Size"] = str(len(blob.data))
    data, status = blob.data, 200
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", h.headers.get("Range", ""))
    if match and (match.group(1) or match.group(2)):
        start_text, end_text = match.groups()
        if start_text:
            start = int(start_text)
            end = min(int(end_text), len(data) - 1) if end_text else len(data) - 1
        else:
            start, end = max(len(data) - int(end_text), 0), len(data) - 1
        if start >= len(data):
            h._send(416, headers={"Content-Range": f"bytes */{len(data)}"}, head=h.command == "HEAD")
            return
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        data, status = data[start : end + 1], 206
    h._send(status, data, "application/octet-stream", headers, head=h.command == "HEAD")


class HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, token: str) -> None:
        self.state = HubState(token=token)
        super().__init__(("127.0.0.1", 0), HubRequestHandler)
        host, port = self.server_address[:2]
        self.state.base_url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(target=self.serve_forever, name="hub-server", daemon=True)

    @property
    def url(self) -> str:
        return self.state.base_url

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
