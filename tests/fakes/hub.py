"""A fake Hugging Face Hub for tests, faithful to the parts of the HTTP API that huggingface_hub uses.

- `GET /api/models`: JSON array, `Link: <…>; rel="next"` pagination by cursor, `search`,
  `author`, `filter`, `pipeline_tag`, `sort`, `limit`, `full`, `cardData`, `expand`.
- `GET /api/models/{repo}[/revision/{rev}]` with `blobs=true` (sizes, blob ids, LFS sha256).
- `GET /api/models/{repo}/tree/{rev}`: the file tree, paginated.
- `HEAD|GET /{repo}/resolve/{rev}/{path}`: `X-Repo-Commit`, `ETag`/`X-Linked-Etag`, `X-Linked-Size`;
  LFS files redirect (302) to a storage URL on a second host name (`localhost`), which honours Range.
- Errors carry `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`, `GatedRepo`);
  a gated repo's metadata is public, its files need the token.

It runs on 127.0.0.1 in a thread, records each request, and can be told to fail,
stall or corrupt bytes so tests can watch the product cope. The product never imports it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import socket
import ssl
import struct
import termios
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from tests.fakes import serve_in_thread, shut_down

LFS_THRESHOLD = 1024  # files at least this big are "LFS" files, as large weights are
PAGE_SIZE = 20  # the real hub pages by `limit` up to 1000; a small page exercises Link pagination


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, bytes] = field(default_factory=dict)
    pipeline_tag: str | None = "text-generation"
    library_name: str | None = "transformers"
    tags: list[str] = field(default_factory=list)
    downloads: int = 0
    likes: int = 0
    trending_score: float = 0
    card_data: dict | None = None
    gated: bool | str = False
    safetensors_total: int | None = None
    gguf: dict | None = None
    created_at: str = "2023-01-01T00:00:00.000Z"
    last_modified: str = "2023-12-01T00:00:00.000Z"
    sha: str = ""

    def __post_init__(self):
        if not self.sha:
            self.sha = hashlib.sha1(self.repo_id.encode()).hexdigest()
        # Hash once: a benchmark's 1 GiB file would otherwise be hashed on every request.
        self.sha256 = {path: hashlib.sha256(data).hexdigest() for path, data in self.files.items()}
        self.git_sha1 = {path: git_blob_sha1(data) for path, data in self.files.items()}

    def is_lfs(self, path: str) -> bool:
        return len(self.files[path]) >= LFS_THRESHOLD

    def sibling(self, path: str, blobs: bool) -> dict:
        entry: dict = {"rfilename": path}
        if blobs:
            data = self.files[path]
            entry.update(size=len(data), blobId=self.git_sha1[path])
            if self.is_lfs(path):
                entry["lfs"] = {"size": len(data), "sha256": self.sha256[path], "pointerSize": 134}
        return entry

    def summary(self) -> dict:
        return {
            "_id": hashlib.md5(self.repo_id.encode()).hexdigest()[:24],
            "id": self.repo_id,
            "modelId": self.repo_id,
            "likes": self.likes,
            "downloads": self.downloads,
            "trendingScore": self.trending_score,
            "private": False,
            "pipeline_tag": self.pipeline_tag,
            "library_name": self.library_name,
            "tags": self.tags,
            "createdAt": self.created_at,
        }

    def full(self, blobs: bool = False) -> dict:
        data = {
            **self.summary(),
            "author": self.repo_id.split("/")[0],
            "sha": self.sha,
            "lastModified": self.last_modified,
            "gated": self.gated,
            "disabled": False,
            "siblings": [self.sibling(path, blobs) for path in sorted(self.files)],
            "usedStorage": sum(len(d) for d in self.files.values()),
        }
        if self.card_data is not None:
            data["cardData"] = self.card_data
        if self.safetensors_total:
            data["safetensors"] = {"parameters": {"F32": self.safetensors_total}, "total": self.safetensors_total}
        if self.gguf:
            data["gguf"] = self.gguf
        return data


class FakeHub:
    def __init__(self):
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[dict] = []
        self.blobs: dict[str, bytes] = {}  # sha256 → bytes, for the storage host
        self.token: str | None = None  # the token that may read gated repos
        self.delay_seconds = 0.0  # added to every API answer
        self.corrupt_times: dict[str, int] = {}  # sha256 of an LFS blob → how many more times to corrupt it
        # sha256 of an LFS blob → storage requests to serve before refusing one with 403, as a signed URL that
        # expired is refused (the next request, through a fresh resolve, is served again)
        self.expire_after: dict[str, int] = {}
        self.bytes_sent: dict[str, int] = {}  # sha256 of an LFS blob → body bytes handed to the kernel for it
        # sha256 of an LFS blob → bytes of it counted in bytes_sent that never reached the client: still in this
        # server's socket send queue when the client vanished (the kernel's count of acknowledged bytes tells;
        # plain HTTP only: over TLS the kernel counts records, not body bytes)
        self.undelivered: dict[str, int] = {}
        self.bytes_per_second: float | None = None  # throttle for file bodies, per connection
        self.sending = self.most_sending = 0  # LFS bodies being sent now, and the most at once
        # Where LFS files redirect when another server holds their blobs (the download benchmark's capped link)
        self.storage_base: str | None = None
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port: int | None = None
        self.scheme = "http"

    # --- content ---
    def add_repo(self, repo_id: str, **kwargs) -> FakeRepo:
        repo = FakeRepo(repo_id, **kwargs)
        self.repos[repo_id] = repo
        for path, data in repo.files.items():
            self.blobs[repo.sha256[path]] = data
        return repo

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def storage_url(self) -> str:
        # Another host name for the same server: the product must not send the token there.
        return self.storage_base or f"{self.scheme}://localhost:{self.port}"

    # --- lifecycle ---
    def start(self, port: int = 0, tls: ssl.SSLContext | None = None) -> "FakeHub":
        """Serve on 127.0.0.1 (and `localhost`), over HTTPS when given a server TLS context."""
        hub = self

        class Handler(HubHandler):
            pass

        Handler.hub = hub
        self.scheme = "https" if tls else "http"
        self._server = serve_in_thread(Handler, port, tls)
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        shut_down(self._server)
        self._server = None

    def requests_to(self, pattern: str) -> list[dict]:
        return [r for r in self.requests if re.search(pattern, r["path"])]


def _bytes_acked(sock: socket.socket) -> int:
    """Bytes the peer's kernel acknowledged on this TCP connection (Linux tcp_info.tcpi_bytes_acked; still
    readable after a reset)."""
    return struct.unpack_from("Q", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256), 120)[0]


def _iso_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class HubHandler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"
    _body_blob = ""  # the last file body sent on this connection, its start and its bytes handed to the kernel
    _body_start = _body_handed = 0

    def finish(self):
        if self._body_blob:
            undelivered = self._body_start + self._body_handed - _bytes_acked(self.connection)
            if undelivered > 0:
                with self.hub.lock:
                    self.hub.undelivered[self._body_blob] = self.hub.undelivered.get(self._body_blob, 0) + undelivered
        super().finish()

    def log_message(self, format, *args):  # keep test output quiet
        pass

    # --- plumbing ---
    def _record(self):
        self.hub.requests.append(
            {"method": self.command, "path": self.path, "host": self.headers.get("Host", ""),
             "headers": {k.lower(): v for k, v in self.headers.items()}, "at": time.time()}
        )

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data, status=200, headers=None):
        self._send(status, json.dumps(data).encode(), headers)

    def _error(self, status: int, code: str, message: str):
        self._json({"error": message}, status, {"X-Error-Code": code, "X-Error-Message": message})

    def _authorized(self) -> bool:
        return bool(self.hub.token) and self.headers.get("Authorization") == f"Bearer {self.hub.token}"

    def _repo(self, repo_id: str, files: bool = False) -> FakeRepo | None:
        """The repo, or None after answering the error. As on the real hub, a gated repo's metadata is public."""
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository Not Found for url: {self.path}")
            return None
        if files and repo.gated and not self._authorized():
            self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access to it.")
            return None
        return repo

    # --- verbs ---
    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        self._record()
        if self.hub.delay_seconds:
            time.sleep(self.hub.delay_seconds)
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        if path == "/api/models":
            return self._list_models(query)
        if path.startswith("/api/models/"):
            return self._model_api(path[len("/api/models/"):], query)
        if path.startswith("/__storage/"):
            return self._storage(path[len("/__storage/"):])
        match = re.match(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$", path)
        if match:
            return self._resolve(match["repo"], match["rev"], match["file"])
        self._error(404, "EntryNotFound", f"No route for {path}")

    # --- /api/models ---
    def _list_models(self, query: dict):
        repos = list(self.hub.repos.values())
        if "search" in query:
            needle = query["search"][0].lower()
            repos = [r for r in repos if needle in r.repo_id.lower()]
        if "author" in query:
            repos = [r for r in repos if r.repo_id.split("/")[0] == query["author"][0]]
        for tag in query.get("filter", []):
            repos = [r for r in repos if tag in r.tags or tag == r.library_name]
        if "pipeline_tag" in query:
            repos = [r for r in repos if r.pipeline_tag == query["pipeline_tag"][0]]
        sort = query.get("sort", [None])[0]
        keys = {"downloads": lambda r: r.downloads, "likes": lambda r: r.likes, "trendingScore": lambda r: r.trending_score,
                "lastModified": lambda r: r.last_modified, "createdAt": lambda r: r.created_at}
        if sort in keys:
            repos.sort(key=keys[sort], reverse=True)
        limit = int(query.get("limit", [1000])[0])
        page_size = min(limit, PAGE_SIZE)
        cursor = int(query.get("cursor", [0])[0])
        page = repos[cursor : cursor + page_size]
        expand = query.get("expand")
        full = query.get("full", ["false"])[0].lower() == "true"
        card = query.get("cardData", ["false"])[0].lower() == "true"
        if expand and (full or card):
            return self._error(400, "BadRequest", "expand cannot be combined with full or cardData")
        items = []
        for repo in page:
            if expand:
                everything = repo.full()
                item = {"id": repo.repo_id, "_id": everything["_id"]}
                item.update({key: everything[key] for key in expand if key in everything})
            else:
                item = repo.full() if full else repo.summary()
                if card and repo.card_data is not None:
                    item["cardData"] = repo.card_data
            items.append(item)
        headers = {}
        if cursor + page_size < len(repos):
            next_query = {k: v for k, v in query.items() if k != "cursor"}
            next_query["cursor"] = [str(cursor + page_size)]
            headers["Link"] = f'<{self.hub.url}/api/models?{urlencode(next_query, doseq=True)}>; rel="next"'
        self._json(items, headers=headers)

    def _model_api(self, rest: str, query: dict):
        match = re.match(r"^(?P<repo>[^/]+/[^/]+)(?:/(?P<kind>revision|tree)/(?P<rev>[^/]+)(?P<sub>/.*)?)?$", rest)
        if not match:
            return self._error(404, "RepoNotFound", "Repository Not Found")
        repo = self._repo(match["repo"])
        if repo is None:
            return
        revision = match["rev"] or "main"
        if revision not in ("main", repo.sha):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        if match["kind"] == "tree":
            entries = []
            for path in sorted(repo.files):
                data = repo.files[path]
                entry = {"type": "file", "oid": repo.git_sha1[path], "size": len(data), "path": path}
                if repo.is_lfs(path):
                    entry["lfs"] = {"oid": repo.sha256[path], "size": len(data), "pointerSize": 134}
                entries.append(entry)
            return self._json(entries)
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        data = repo.full(blobs=blobs)
        expand = query.get("expand")
        if expand:
            data = {"id": repo.repo_id, **{key: data[key] for key in expand if key in data}}
        self._json(data)

    # --- files ---
    def _resolve(self, repo_id: str, revision: str, path: str):
        repo = self._repo(repo_id, files=True)
        if repo is None:
            return
        if revision not in ("main", repo.sha):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        if path not in repo.files:
            return self._error(404, "EntryNotFound", f"{path} does not exist at {revision}")
        data = repo.files[path]
        headers = {"X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes"}
        if repo.is_lfs(path):
            sha256 = repo.sha256[path]
            headers.update(
                {"X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(data)), "ETag": f'"{repo.git_sha1[path]}"',
                 "Location": f"{self.hub.storage_url}/__storage/{sha256}?name={quote(path)}"}
            )
            return self._send(302, b"", headers)
        headers["ETag"] = f'"{repo.git_sha1[path]}"'
        self._body(data, headers)

    def _storage(self, sha256: str):
        data = self.hub.blobs.get(sha256)
        if data is None:
            return self._error(404, "EntryNotFound", "No such blob")
        if sha256 in self.hub.expire_after and self.command == "GET":
            self.hub.expire_after[sha256] -= 1
            if self.hub.expire_after[sha256] < 0:
                del self.hub.expire_after[sha256]
                return self._send(403, b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message>"
                                       b"</Error>", content_type="application/xml")
        if self.hub.corrupt_times.get(sha256) and self.command == "GET":
            self.hub.corrupt_times[sha256] -= 1
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
        return self._body(data, {"ETag": f'"{sha256}"', "Accept-Ranges": "bytes"}, sha256)

    def _body(self, data: bytes, headers: dict, count_as: str = ""):
        start, end, status = 0, len(data) - 1, 200
        byte_range = self.headers.get("Range")
        if byte_range:
            match = re.match(r"bytes=(\d+)-(\d*)$", byte_range.strip())
            if not match or int(match[1]) >= len(data):
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            start = int(match[1])
            end = min(int(match[2]), len(data) - 1) if match[2] else len(data) - 1
            status = 206
            headers = {**headers, "Content-Range": f"bytes {start}-{end}/{len(data)}"}
        body = memoryview(data)[start : end + 1]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        rate = self.hub.bytes_per_second
        chunk = 1024 * 1024 if not rate else max(1024, int(rate / 20))
        if count_as:
            # Everything handed to the kernel on this connection so far (acknowledged + still queued).
            self._body_start = _bytes_acked(self.connection) + struct.unpack(
                "i", fcntl.ioctl(self.connection.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
            self._body_blob, self._body_handed = count_as, 0
            with self.hub.lock:
                self.hub.sending += 1
                self.hub.most_sending = max(self.hub.most_sending, self.hub.sending)
        try:
            for offset in range(0, len(body), chunk):
                piece = body[offset : offset + chunk]
                while piece:
                    sent = self.connection.send(piece)
                    piece = piece[sent:]
                    if count_as:
                        self._body_handed += sent
                        with self.hub.lock:
                            self.hub.bytes_sent[count_as] = self.hub.bytes_sent.get(count_as, 0) + sent
                if rate:
                    time.sleep(chunk / rate)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            if count_as:
                with self.hub.lock:
                    self.hub.sending -= 1
