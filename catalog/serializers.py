"""The public shape of catalog entries and sync jobs."""

from __future__ import annotations

from typing import Any

from catalog import selectors
from catalog.models import CatalogModel, SyncJob
from core.api import utc_timestamp


def model_to_dict(model: CatalogModel, favorites: set, downloaded: set, full: bool = False) -> dict[str, Any]:
    key = (model.source, model.model_id)
    data = {
        "id": model.model_id,
        "name": model.name or model.model_id,
        "description": model.description,
        "model_type": model.model_type,
        "source": model.source,
        "parameters": model.parameters,
        "size_gb": round(model.size_bytes / 1024**3, 3) if model.size_bytes is not None else None,
        "downloads": model.downloads,
        "likes": model.likes,
        "tags": model.tags,
        "is_favorite": key in favorites,
        "downloaded": key in downloaded,
        "created_at": utc_timestamp(model.created_at) if model.created_at else None,
        "updated_at": utc_timestamp(model.updated_at) if model.updated_at else None,
    }
    if full:
        details = model.details or {}
        data.update(
            {
                "gated": details.get("gated", False),
                "library": details.get("library"),
                "files": details.get("files", []),
                "quantizations": details.get("quantizations", []),
                "details": {k: v for k, v in details.items() if k not in ("files", "quantizations", "gated", "library")},
                "last_synced_at": utc_timestamp(model.last_synced_at) if model.last_synced_at else None,
            }
        )
    return data


def models_to_dicts(models: list[CatalogModel]) -> list[dict[str, Any]]:
    favorites, downloaded = selectors.favorite_keys(models), selectors.downloaded_keys(models)
    return [model_to_dict(model, favorites, downloaded) for model in models]


def job_to_dict(job: SyncJob) -> dict:
    return {
        "id": job.id,
        "source": job.source,
        "limit": job.limit,
        "status": job.status,
        "added": job.added,
        "updated": job.updated,
        "failed": job.failed,
        "error": job.error or None,
        "created_at": utc_timestamp(job.created_at),
        "started_at": utc_timestamp(job.started_at) if job.started_at else None,
        "finished_at": utc_timestamp(job.finished_at) if job.finished_at else None,
    }
