"""The Hugging Face Hub, through huggingface_hub at the configured HF_ENDPOINT."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from django.conf import settings
from huggingface_hub import HfApi, hf_hub_url
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.hf_api import ModelInfo

from catalog.sources import (
    DownloadPlan,
    RemoteFile,
    RemoteModel,
    RemoteModelGated,
    RemoteModelNotFound,
    SourceError,
    format_parameters,
    readable_name,
)

SOURCE = "huggingface"
# Search results carry these; `expand` cannot be combined with `full`/`cardData`.
SEARCH_FIELDS = [
    "author", "cardData", "createdAt", "downloads", "gated", "gguf", "lastModified",
    "library_name", "likes", "pipeline_tag", "safetensors", "tags", "trendingScore",
]
SORT_FIELDS = {"downloads": "downloads", "likes": "likes", "updated": "lastModified", "trending": "trendingScore"}
GGUF_QUANT = re.compile(r"(?i)(?:^|[-_.])((?:I?Q\d(?:_[A-Z0-9]+)*)|F16|BF16|F32)\.gguf$")


def api(timeout: float | None = None) -> HfApi:
    # huggingface_hub reads HF_ENDPOINT at import time: pass the setting explicitly.
    return HfApi(endpoint=settings.HF_ENDPOINT, token=settings.HF_TOKEN or False, library_name="llm-manager")


def search(query: str = "", model_type: str = "", sort: str = "downloads", limit: int = 50) -> list[RemoteModel]:
    try:
        models = api().list_models(
            search=query or None,
            pipeline_tag=model_type or None,
            sort=SORT_FIELDS.get(sort, "downloads"),
            limit=limit,
            expand=SEARCH_FIELDS,
        )
        return [to_remote_model(info) for info in models]
    except HfHubHTTPError as exc:
        raise SourceError(f"Hugging Face search failed: {exc}") from exc
    except Exception as exc:  # connection errors, timeouts, bad payloads
        raise SourceError(f"Hugging Face is unreachable: {exc}") from exc


def _fetch_info(repo_id: str, revision: str | None) -> ModelInfo:
    try:
        return api().model_info(repo_id, revision=revision, files_metadata=True)
    except GatedRepoError as exc:
        raise RemoteModelGated(f"{repo_id} is gated: a token with access is needed (HF_TOKEN)") from exc
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise RemoteModelNotFound(f"{repo_id} was not found on Hugging Face") from exc
    except HfHubHTTPError as exc:
        raise SourceError(f"Hugging Face answered an error for {repo_id}: {exc}") from exc
    except Exception as exc:
        raise SourceError(f"Hugging Face is unreachable: {exc}") from exc


def model_info(repo_id: str, revision: str | None = None) -> RemoteModel:
    return to_remote_model(_fetch_info(repo_id, revision))


def download_plan(repo_id: str, revision: str = "main", include: list[str] | None = None) -> DownloadPlan:
    """The files of a repository at a revision (all, or those matching `include` globs), with their hashes."""
    info = _fetch_info(repo_id, revision)
    commit = info.sha or revision
    files = []
    for sibling in info.siblings or []:
        if include and not any(fnmatch.fnmatch(sibling.rfilename, pattern) for pattern in include):
            continue
        files.append(
            RemoteFile(
                path=sibling.rfilename,
                url=hf_hub_url(repo_id, sibling.rfilename, revision=commit, endpoint=settings.HF_ENDPOINT),
                size=sibling.size or 0,
                sha256=sibling.lfs.sha256 if sibling.lfs else "",
                git_sha1="" if sibling.lfs else (sibling.blob_id or ""),
            )
        )
    if not files:
        raise RemoteModelNotFound(f"No file of {repo_id} matches {include}" if include else f"{repo_id} has no files")
    return DownloadPlan(model_id=repo_id, source=SOURCE, revision=commit, files=files)


def _parameter_count(info: ModelInfo) -> int | None:
    safetensors = getattr(info, "safetensors", None)
    if safetensors is not None and getattr(safetensors, "total", None):
        return safetensors.total
    gguf = info.gguf or {}
    return gguf.get("total") if isinstance(gguf, dict) else None


def _description(info: ModelInfo) -> str:
    card = info.card_data
    if card is None:
        return ""
    data = card.to_dict() if hasattr(card, "to_dict") else dict(card)
    for key in ("description", "model_description", "summary"):
        if isinstance(data.get(key), str):
            return data[key]
    return ""


def gguf_quantizations(filenames: list[str]) -> list[str]:
    found = []
    for filename in filenames:
        match = GGUF_QUANT.search(filename)
        if match and match.group(1).upper() not in found:
            found.append(match.group(1).upper())
    return found


def to_remote_model(info: ModelInfo) -> RemoteModel:
    details: dict[str, Any] = {"gated": info.gated or False, "library": info.library_name, "sha": info.sha}
    size_bytes = None
    if info.siblings is not None:
        files = [{"path": s.rfilename, "size": s.size, "lfs_sha256": s.lfs.sha256 if s.lfs else None} for s in info.siblings]
        details["files"] = files
        sizes = [f["size"] for f in files if f["size"] is not None]
        size_bytes = sum(sizes) if sizes else None
        ggufs = [f["path"] for f in files if fnmatch.fnmatch(f["path"].lower(), "*.gguf")]
        if ggufs:
            details["quantizations"] = gguf_quantizations(ggufs)
    if isinstance(info.gguf, dict):
        details["gguf"] = {k: v for k, v in info.gguf.items() if k in ("architecture", "context_length", "total")}
    name = info.id.split("/")[-1]
    return RemoteModel(
        model_id=info.id,
        source=SOURCE,
        name=readable_name(name),
        description=_description(info),
        model_type=info.pipeline_tag or "",
        parameters=format_parameters(_parameter_count(info)),
        size_bytes=size_bytes,
        downloads=info.downloads or 0,
        likes=info.likes or 0,
        trending_score=float(info.trending_score or 0),
        tags=list(info.tags or []),
        details=details,
        created_at=info.created_at,
        updated_at=info.last_modified,
    )
