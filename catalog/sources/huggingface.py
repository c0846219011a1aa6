"""The Hugging Face Hub, through huggingface_hub at the configured HF_ENDPOINT.

Downloads land in the hub cache layout (`models--org--name/blobs/{etag}`, `snapshots/{commit}/{path}`
relative symlinks, `refs/{revision}`), so `scan_cache_dir()`, transformers and vLLM find them offline.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import Any

from django.conf import settings
from huggingface_hub import CacheNotFound, HfApi, hf_hub_url, scan_cache_dir
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import ModelInfo
from huggingface_hub.utils import validate_repo_id

from catalog.sources import (
    Claim,
    DownloadPlan,
    InvalidModelId,
    LocalCopy,
    ModelFiles,
    ModelSource,
    RemoteFile,
    RemoteModel,
    RemoteModelGated,
    RemoteModelNotFound,
    SourceError,
    StoredFile,
    StoredModel,
    format_parameters,
    readable_name,
)
from catalog.sources.repository import gguf_quantizations, snapshot_model_files
from core.digests import file_digest
from core.paths import InvalidFileName, inside, safe_relative_path

# Search results carry these; `expand` cannot be combined with `full`/`cardData`.
SEARCH_FIELDS = [
    "author", "cardData", "createdAt", "downloads", "gated", "gguf", "lastModified",
    "library_name", "likes", "pipeline_tag", "safetensors", "tags", "trendingScore",
]
SORT_FIELDS = {"downloads": "downloads", "likes": "likes", "updated": "lastModified", "trending": "trendingScore"}


class HuggingFace(ModelSource):
    name = "huggingface"
    label = "Hugging Face"
    default_revision = "main"
    selects_files = True

    def claims(self, model_id: str) -> Claim:
        return Claim.LIKELY if "/" in model_id else Claim.NO

    def canonical_id(self, model_id: str) -> str:
        try:
            validate_repo_id(model_id)
        except HFValidationError as exc:
            raise InvalidModelId(f"{model_id!r} is not a Hugging Face repository id: {exc}") from None
        return model_id

    def search(self, *, query: str = "", model_type: str = "", sort: str = "downloads",
               limit: int = 50) -> list[RemoteModel]:
        try:
            models = _api().list_models(search=query or None, pipeline_tag=model_type or None,
                                        sort=SORT_FIELDS.get(sort, "downloads"), limit=limit, expand=SEARCH_FIELDS)
            return [to_remote_model(info) for info in models]
        except HfHubHTTPError as exc:
            raise SourceError(f"Hugging Face search failed: {exc}") from exc
        except Exception as exc:  # connection errors, timeouts, bad payloads
            raise SourceError(f"Hugging Face is unreachable: {exc}") from exc

    def model_info(self, *, model_id: str) -> RemoteModel:
        return to_remote_model(_fetch_info(model_id, None))

    def download_plan(self, *, model_id: str, revision: str, include: list[str]) -> DownloadPlan:
        """The files of a repository at a revision (all, or those matching `include` globs), with their hashes."""
        info = _fetch_info(model_id, revision or self.default_revision)
        commit = info.sha or revision
        files = []
        for sibling in info.siblings or []:
            if include and not any(fnmatch.fnmatch(sibling.rfilename, pattern) for pattern in include):
                continue
            safe_relative_path(sibling.rfilename)  # refuse odd names before anything is written
            digest = sibling.lfs.sha256 if sibling.lfs else ""
            git_sha1 = "" if sibling.lfs else (sibling.blob_id or "")
            files.append(RemoteFile(
                path=sibling.rfilename,
                url=hf_hub_url(model_id, sibling.rfilename, revision=commit, endpoint=settings.HF_ENDPOINT),
                size=sibling.size or 0, sha256=digest, git_sha1=git_sha1,
                destination=self._blob(model_id, digest or git_sha1)))
        if not files:
            raise RemoteModelNotFound(f"No file of {model_id} matches {include}" if include else f"{model_id} has no files")
        return DownloadPlan(model_id=model_id, source=self.name, revision=commit, files=files,
                            storage_path=self.repo_dir(model_id))

    def authorization(self) -> str | None:
        return f"Bearer {settings.HF_TOKEN}" if settings.HF_TOKEN else None

    def put_in_place(self, *, model: StoredModel) -> None:
        """Point `snapshots/{commit}/{path}` at each blob with a relative link, and `refs/{revision}` at the commit."""
        repo_dir = self.repo_dir(model.model_id)
        if not re.fullmatch(r"[0-9a-f]{40}", model.commit):
            raise InvalidFileName(f"refused commit {model.commit!r}")
        for file in model.files:
            target = inside(repo_dir, repo_dir / "snapshots" / model.commit / safe_relative_path(file.path))
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            target.symlink_to(os.path.relpath(file.destination, target.parent))
        if model.revision and model.revision != model.commit:
            ref = repo_dir / "refs" / safe_relative_path(model.revision)
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(model.commit)

    def model_files(self, *, model: StoredModel, file: str = "", quantization: str = "") -> ModelFiles:
        snapshot = Path(model.storage_path) / "snapshots" / model.commit
        return snapshot_model_files(model, snapshot, {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(self.hub_cache())},
                                    file=file, quantization=quantization)

    def find_local(self, *, path: Path | None = None, name: str = "") -> list[LocalCopy]:
        """Every model revision in a hub cache (`HF_HUB_CACHE`, default ~/.cache/huggingface/hub), read with
        huggingface_hub's own scanner; each blob checked against its name (sha256 or git blob id)."""
        root = path or settings.IMPORT_HF_CACHE
        try:
            cache = scan_cache_dir(root)
        except CacheNotFound:
            return []
        found = []
        for repo in cache.repos:
            if repo.repo_type != "model":
                continue
            for revision in repo.revisions:
                files = [StoredFile(path=file.file_path.relative_to(revision.snapshot_path).as_posix(),
                                    destination=str(file.blob_path), size=file.size_on_disk)
                         for file in revision.files]
                refs = sorted(revision.refs)
                model = StoredModel(model_id=repo.repo_id, source=self.name, revision=refs[0] if refs else
                                    revision.commit_hash, commit=revision.commit_hash,
                                    storage_path=str(repo.repo_path), files=files)
                found.append(LocalCopy(model=model, total_bytes=sum(f.size for f in files),
                                       problem=_blob_problem(files)))
        return found

    def hub_cache(self) -> Path:
        return self.root() / "hub"

    def repo_dir(self, repo_id: str) -> Path:
        return self.hub_cache() / f"models--{self.canonical_id(repo_id).replace('/', '--')}"

    def _blob(self, repo_id: str, etag: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", etag):
            raise InvalidFileName(f"refused blob id {etag!r}")
        return self.repo_dir(repo_id) / "blobs" / etag


def _blob_problem(files: list[StoredFile]) -> str:
    """What is wrong with a cached revision's blobs (their names are their digests), or nothing."""
    for file in files:
        name = Path(file.destination).name
        algorithm = "sha256" if len(name) == 64 else "git" if len(name) == 40 else ""
        if algorithm and file_digest(Path(file.destination), algorithm) != name:
            return f"{file.path}: its bytes do not match the digest its blob is named by"
    return ""


def _api() -> HfApi:
    # huggingface_hub reads HF_ENDPOINT at import time: pass the setting explicitly.
    return HfApi(endpoint=settings.HF_ENDPOINT, token=settings.HF_TOKEN or False, library_name="llm-manager")


def _fetch_info(repo_id: str, revision: str | None) -> ModelInfo:
    try:
        return _api().model_info(repo_id, revision=revision, files_metadata=True)
    except GatedRepoError as exc:
        raise RemoteModelGated(f"{repo_id} is gated: a token with access is needed (HF_TOKEN)") from exc
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise RemoteModelNotFound(f"{repo_id} was not found on Hugging Face") from exc
    except HfHubHTTPError as exc:
        raise SourceError(f"Hugging Face answered an error for {repo_id}: {exc}") from exc
    except Exception as exc:
        raise SourceError(f"Hugging Face is unreachable: {exc}") from exc


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
        source=HuggingFace.name,
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


SOURCE = HuggingFace()
