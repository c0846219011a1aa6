"""ModelScope (MODELSCOPE_ENDPOINT, token MODELSCOPE_API_TOKEN), spoken as its own client `modelscope` speaks it.

- Search: `GET /openapi/v1/models?search=&sort=&page_number=&page_size=` (at most 50 a page), answering
  `{success, data: {models: [...], total_count}}`.
- Info: `GET /openapi/v1/models/{owner}/{name}` (`{success, data}`), falling back on 404 to the older
  `GET /api/v1/models/{owner}/{name}` (`{Code, Data, Message, Success}`, PascalCase fields).
- Files: `GET /api/v1/models/{id}/repo/files?Revision=&Recursive=True` → `Data.Files[]` with `Path`, `Type`
  (`blob`/`tree`), `Size`, `Sha256`; revisions: `GET /api/v1/models/{id}/revisions` → `Data.RevisionMap`.
- Download: `GET /api/v1/models/{id}/repo?Revision=&FilePath=` (large files redirect to a CDN).

Downloads land where the client's `snapshot_download` looks: `{cache}/models/{owner}--{name}/snapshots/{revision}/…`
with the data dir's `models/modelscope` as the cache, files in place (no blob store).
"""

from __future__ import annotations

import fnmatch
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
from django.conf import settings

from catalog.sources import (
    DownloadPlan,
    InvalidModelId,
    ModelFiles,
    ModelSource,
    RemoteFile,
    RemoteModel,
    RemoteModelGated,
    RemoteModelNotFound,
    SourceError,
    StoredModel,
    format_parameters,
    readable_name,
)
from catalog.sources.repository import gguf_quantizations, snapshot_model_files
from core.paths import inside, safe_relative_path

_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}/[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
SORT_FIELDS = {"downloads": "downloads", "likes": "likes", "updated": "last_modified", "trending": "default"}
PAGE_SIZE = 50  # the most a search page holds
TIMEOUT = httpx.Timeout(10.0, connect=3.0)


class ModelScope(ModelSource):
    name = "modelscope"
    label = "ModelScope"
    default_revision = "master"
    selects_files = True
    trending_sort = "downloads"  # ModelScope publishes no trending score

    # `owner/name` is Hugging Face's shape too: a ModelScope id is taken as one only when named so,
    # or when the catalog already knows it from here.

    def canonical_id(self, model_id: str) -> str:
        if not _MODEL_ID.fullmatch(model_id) or ".." in model_id:
            raise InvalidModelId(f"{model_id!r} is not a ModelScope model id (owner/name)")
        return model_id

    def search(self, *, query: str = "", model_type: str = "", sort: str = "downloads",
               limit: int = 50) -> list[RemoteModel]:
        found: list[RemoteModel] = []
        page = 1
        while len(found) < limit:
            params = {"search": query or None, "sort": SORT_FIELDS.get(sort, "default"), "page_number": page,
                      "page_size": min(PAGE_SIZE, limit)}
            if model_type:
                params["task"] = model_type
            data = _envelope_data(_get("/openapi/v1/models", params={k: v for k, v in params.items() if v}), "search")
            models = data.get("models") if isinstance(data, dict) else None
            if not isinstance(models, list):
                raise SourceError("ModelScope answered a search without a model list")
            found += [to_remote_model(item) for item in models if isinstance(item, dict) and item.get("id")]
            if len(models) < params["page_size"] or page * params["page_size"] >= int(data.get("total_count") or 0):
                break
            page += 1
        return found[:limit]

    def model_info(self, *, model_id: str) -> RemoteModel:
        model_id = self.canonical_id(model_id)
        response = _get(f"/openapi/v1/models/{model_id}")
        if response.status_code == 404:
            response = _get(f"/api/v1/models/{model_id}")
        model = to_remote_model(_envelope_data(response, model_id))
        files = self._files(model_id, self.default_revision)
        model.details["files"] = [{"path": f["Path"], "size": f.get("Size"), "sha256": f.get("Sha256") or None}
                                  for f in files]
        model.size_bytes = sum(int(f.get("Size") or 0) for f in files) or model.size_bytes
        ggufs = [f["Path"] for f in files if f["Path"].lower().endswith(".gguf")]
        if ggufs:
            model.details["quantizations"] = gguf_quantizations(ggufs)
        return model

    def download_plan(self, *, model_id: str, revision: str, include: list[str]) -> DownloadPlan:
        model_id = self.canonical_id(model_id)
        revision = revision or self.default_revision
        if not _REVISION.fullmatch(revision):
            raise InvalidModelId(f"{revision!r} is not a revision (a branch or tag name)")
        snapshot = self.repo_dir(model_id) / "snapshots" / revision
        files = []
        for entry in self._files(model_id, revision):
            path = entry["Path"]
            if include and not any(fnmatch.fnmatch(path, pattern) for pattern in include):
                continue
            url = (f"{settings.MODELSCOPE_ENDPOINT}/api/v1/models/{model_id}/repo"
                   f"?Revision={quote_plus(revision)}&FilePath={quote_plus(path)}")
            files.append(RemoteFile(path=path, url=url, size=int(entry.get("Size") or 0),
                                    sha256=str(entry.get("Sha256") or "").lower(),
                                    destination=inside(snapshot, snapshot / safe_relative_path(path))))
        if not files:
            raise RemoteModelNotFound(f"No file of {model_id} matches {include}" if include else f"{model_id} has no files")
        return DownloadPlan(model_id=model_id, source=self.name, revision=revision, files=files,
                            storage_path=self.repo_dir(model_id))

    def authorization(self) -> str | None:
        return f"Bearer {settings.MODELSCOPE_API_TOKEN}" if settings.MODELSCOPE_API_TOKEN else None

    def model_files(self, *, model: StoredModel, file: str = "", quantization: str = "") -> ModelFiles:
        snapshot = Path(model.storage_path) / "snapshots" / model.commit
        return snapshot_model_files(model, snapshot, {"HF_HUB_OFFLINE": "1"}, file=file, quantization=quantization)

    def repo_dir(self, model_id: str) -> Path:
        return self.root() / "models" / self.canonical_id(model_id).replace("/", "--")

    def _files(self, model_id: str, revision: str) -> list[dict[str, Any]]:
        """The repository's files (not its directories) at a revision."""
        response = _get(f"/api/v1/models/{model_id}/repo/files", params={"Revision": revision, "Recursive": "True"})
        data = _envelope_data(response, model_id)
        entries = data.get("Files") if isinstance(data, dict) else data
        if not isinstance(entries, list):
            raise SourceError(f"ModelScope answered a file list we cannot read for {model_id}")
        return [entry for entry in entries
                if isinstance(entry, dict) and entry.get("Type") != "tree" and isinstance(entry.get("Path"), str)]


def _get(path: str, params: dict | None = None) -> httpx.Response:
    headers = {"User-Agent": "llm-manager"}
    if settings.MODELSCOPE_API_TOKEN:
        headers["Authorization"] = f"Bearer {settings.MODELSCOPE_API_TOKEN}"
    url = f"{settings.MODELSCOPE_ENDPOINT}{quote(path)}"
    try:
        return httpx.get(url, params=params, headers=headers, timeout=TIMEOUT, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise SourceError(f"ModelScope is unreachable at {settings.MODELSCOPE_ENDPOINT}: {exc}") from exc


def _envelope_data(response: httpx.Response, what: str) -> Any:
    """The `data` (OpenAPI) or `Data` (older API) of an answer, after its status and `success` flag."""
    if response.status_code == 404:
        raise RemoteModelNotFound(f"{what} was not found on ModelScope")
    if response.status_code in (401, 403):
        raise RemoteModelGated(f"{what}: ModelScope refused access ({response.status_code}); a token with access "
                               "is needed (MODELSCOPE_API_TOKEN)")
    try:
        body = response.json()
    except ValueError:
        raise SourceError(f"ModelScope answered {response.status_code} with something that is not JSON") from None
    if response.status_code != 200 or not isinstance(body, dict) or body.get("success", body.get("Success")) is False:
        message = body.get("message") or body.get("Message") if isinstance(body, dict) else ""
        raise SourceError(f"ModelScope answered {response.status_code} for {what}: {message}")
    return body.get("data", body.get("Data"))


def _timestamp(value: Any) -> datetime | None:
    """ModelScope writes times as ISO 8601 (OpenAPI) or Unix seconds (the older API)."""
    if isinstance(value, (int, float)) and value > 0:
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def to_remote_model(data: dict[str, Any]) -> RemoteModel:
    """One model of a search or info answer, in either API's field names."""
    if not isinstance(data, dict):
        raise SourceError("ModelScope answered a model that is not an object")
    model_id = data.get("id") if isinstance(data.get("id"), str) and "/" in str(data.get("id")) else None
    if model_id is None:
        owner, name = data.get("Path") or data.get("owner"), data.get("Name") or data.get("name")
        model_id = f"{owner}/{name}" if owner and name else ""
    if not model_id:
        raise SourceError("ModelScope answered a model without an id")
    tasks = data.get("tasks") or [task.get("Name") for task in data.get("Tasks") or [] if isinstance(task, dict)]
    tags = [str(tag) for tag in (data.get("tags") or data.get("Tags") or []) if tag]
    return RemoteModel(
        model_id=model_id,
        source=ModelScope.name,
        name=data.get("display_name") or data.get("ChineseName") or readable_name(model_id.split("/")[-1]),
        description=str(data.get("description") or data.get("Description") or ""),
        model_type=str(tasks[0]) if tasks else "",
        parameters=format_parameters(data.get("parameters") or data.get("Parameters")),
        size_bytes=data.get("file_size") or data.get("StorageSize") or None,
        downloads=int(data.get("downloads") or data.get("Downloads") or 0),
        likes=int(data.get("likes") or data.get("Stars") or data.get("Likes") or 0),
        tags=tags,
        details={"gated": bool(data.get("gated")), "license": data.get("license") or data.get("License"),
                 "tasks": [str(t) for t in tasks if t]},
        created_at=_timestamp(data.get("created_at") or data.get("CreatedTime") or data.get("CreatedAt")),
        updated_at=_timestamp(data.get("last_modified") or data.get("LastUpdatedTime") or data.get("UpdatedAt")),
    )


SOURCE = ModelScope()
