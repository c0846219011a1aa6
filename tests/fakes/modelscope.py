"""A fake ModelScope hub for tests, answering the HTTP API as the `modelscope` client (modelscope-hub 0.5) reads it.

- `GET /openapi/v1/models?search=&sort=&page_number=&page_size=&task=` → `{success, data: {models, total_count,
  page_number, page_size}, request_id}`; page size at most 50.
- `GET /openapi/v1/models/{owner}/{name}` → `{success, data: {id, display_name, description, downloads, likes,
  tags, tasks, created_at, last_modified, license, private, gated}}`; models in `legacy_only` answer 404 here,
  as models the OpenAPI index lacks do, and only the older API below knows them.
- `GET /api/v1/models/{owner}/{name}` → `{Code, Data, Message, RequestId, Success}` with PascalCase fields.
- `GET /api/v1/models/{id}/revisions` → `Data.RevisionMap.{Branches,Tags}`.
- `GET /api/v1/models/{id}/repo/files?Revision=&Recursive=True` → `Data.Files[]` (`Path`, `Name`, `Type`
  blob/tree, `Size`, `Sha256`, `IsLFS`, `Revision`).
- `GET /api/v1/models/{id}/repo?Revision=&FilePath=`: small files inline; large ones redirect (302) to a CDN on a
  second host name (`localhost`), which honours Range and must not get the token.

The files, throttling, corruption and byte counting are the fake Hugging Face hub's (the same server
machinery); only the routes and shapes are ModelScope's. The product never imports it.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qs, quote, unquote, urlsplit

from tests.fakes import serve_in_thread
from tests.fakes.hub import FakeHub, FakeRepo, HubHandler

PAGE_SIZE_LIMIT = 50
DEFAULT_REVISION = "master"


class FakeModelScope(FakeHub):
    def __init__(self):
        super().__init__()
        self.legacy_only: set[str] = set()  # ids the OpenAPI surface does not know

    def start(self, port: int = 0, tls=None) -> "FakeModelScope":
        class Handler(ModelScopeHandler):
            pass

        Handler.hub = self
        self._server = serve_in_thread(Handler, port, tls)
        self.port = self._server.server_address[1]
        return self


def _openapi_model(repo: FakeRepo) -> dict:
    card = repo.card_data or {}
    return {"id": repo.repo_id, "display_name": repo.repo_id.split("/")[-1], "description": card.get("description", ""),
            "downloads": repo.downloads, "likes": repo.likes, "tags": repo.tags,
            "tasks": [repo.pipeline_tag] if repo.pipeline_tag else [], "created_at": repo.created_at,
            "last_modified": repo.last_modified, "license": card.get("license"), "private": False,
            "gated": bool(repo.gated), "file_size": sum(len(data) for data in repo.files.values())}


def _legacy_model(repo: FakeRepo) -> dict:
    owner, name = repo.repo_id.split("/")
    card = repo.card_data or {}
    return {"Id": abs(hash(repo.repo_id)) % 10**6, "Path": owner, "Name": name, "ChineseName": "",
            "Description": card.get("description", ""), "Downloads": repo.downloads, "Stars": repo.likes,
            "Tags": repo.tags, "Tasks": [{"Name": repo.pipeline_tag}] if repo.pipeline_tag else [],
            "CreatedTime": 1672531200, "LastUpdatedTime": 1701388800, "License": card.get("license")}


class ModelScopeHandler(HubHandler):
    hub: FakeModelScope

    def _envelope(self, data, status: int = 200):
        self._json({"success": status == 200, "data": data if status == 200 else None,
                    "message": "" if status == 200 else str(data), "request_id": uuid.uuid4().hex}, status)

    def _legacy(self, data, status: int = 200):
        self._json({"Code": 200 if status == 200 else 10010205001, "Data": data if status == 200 else None,
                    "Message": "success" if status == 200 else str(data), "RequestId": uuid.uuid4().hex,
                    "Success": status == 200}, status)

    def do_GET(self):
        self._record()
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), {k: v[0] for k, v in parse_qs(parts.query).items()}
        if path == "/openapi/v1/models":
            return self._search(query)
        match = re.match(r"^/openapi/v1/models/(?P<repo>[^/]+/[^/]+)$", path)
        if match:
            repo = self.hub.repos.get(match["repo"])
            if repo is None or repo.repo_id in self.hub.legacy_only:
                return self._envelope(f"model {match['repo']} not found", 404)
            return self._envelope(_openapi_model(repo))
        match = re.match(r"^/api/v1/models/(?P<repo>[^/]+/[^/]+)(?P<rest>/.*)?$", path)
        if match:
            return self._legacy_api(match["repo"], match["rest"] or "", query)
        if path.startswith("/__storage/"):
            return self._storage(path[len("/__storage/"):])
        self._envelope(f"no route {path}", 404)

    def _search(self, query: dict):
        repos = list(self.hub.repos.values())
        if query.get("search"):
            needle = query["search"].lower()
            repos = [r for r in repos if needle in r.repo_id.lower()]
        if query.get("task"):
            repos = [r for r in repos if r.pipeline_tag == query["task"]]
        keys = {"downloads": lambda r: r.downloads, "likes": lambda r: r.likes,
                "last_modified": lambda r: r.last_modified}
        if query.get("sort") in keys:
            repos.sort(key=keys[query["sort"]], reverse=True)
        size = int(query.get("page_size", 10))
        number = int(query.get("page_number", 1))
        if size > PAGE_SIZE_LIMIT:
            return self._envelope(f"page_size must be at most {PAGE_SIZE_LIMIT}", 400)
        page = repos[(number - 1) * size: number * size]
        self._envelope({"models": [_openapi_model(r) for r in page], "total_count": len(repos),
                        "page_number": number, "page_size": size})

    def _legacy_api(self, repo_id: str, rest: str, query: dict):
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            return self._legacy(f"model {repo_id} not found", 404)
        if rest == "":
            return self._legacy(_legacy_model(repo))
        if rest == "/revisions":
            return self._legacy({"RevisionMap": {"Branches": [{"Revision": DEFAULT_REVISION}],
                                                 "Tags": [{"Revision": "v1.0"}]}})
        revision = query.get("Revision", DEFAULT_REVISION)
        if revision not in (DEFAULT_REVISION, "v1.0", repo.sha):
            return self._legacy(f"revision {revision} not found", 404)
        if rest == "/repo/files":
            return self._legacy({"Files": self._files(repo, revision)})
        if rest == "/repo":
            return self._download(repo, query.get("FilePath", ""))
        self._legacy(f"no route {rest}", 404)

    @staticmethod
    def _files(repo: FakeRepo, revision: str) -> list[dict]:
        entries, directories = [], set()
        for path in sorted(repo.files):
            data = repo.files[path]
            directories.update("/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1))
            entries.append({"Name": path.split("/")[-1], "Path": path, "Type": "blob", "Size": len(data),
                            "Sha256": repo.sha256[path], "IsLFS": repo.is_lfs(path), "Revision": revision,
                            "CommitMessage": "upload", "CommittedDate": 1701388800})
        entries += [{"Name": d.split("/")[-1], "Path": d, "Type": "tree", "Size": 0, "Sha256": "", "IsLFS": False,
                     "Revision": revision} for d in sorted(directories)]
        return entries

    def _download(self, repo: FakeRepo, path: str):
        if path not in repo.files:
            return self._legacy(f"file {path} not found", 404)
        if repo.is_lfs(path):
            location = f"{self.hub.storage_url}/__storage/{repo.sha256[path]}?name={quote(path)}"
            return self._send(302, b"", {"Location": location})
        self._body(repo.files[path], {"Accept-Ranges": "bytes"})
