"""Catalog queries: full-text search, lookups and the public shape of catalog entries."""

from __future__ import annotations

import re
from typing import Any, Iterable

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL

from catalog.models import CatalogModel, Favorite
from downloads.models import DownloadStatus, DownloadTask
from llm_manager.api import utc_timestamp

ORDERINGS = {
    "downloads": ("-downloads", "model_id"),
    "likes": ("-likes", "model_id"),
    "updated": ("-updated_at", "model_id"),
    "trending": ("-trending_score", "-downloads", "model_id"),
}
_NOT_WORD = re.compile(r"[^\w]+", re.UNICODE)


def fts_expression(query: str) -> str:
    """Each word of the query as a prefix phrase, all required: `llama3.2 chat` → `"llama3 2"* AND "chat"*`."""
    phrases = [" ".join(_NOT_WORD.sub(" ", word).split()) for word in query.split()]
    return " AND ".join(f'"{phrase}"*' for phrase in phrases if phrase)


def text_filter(queryset: QuerySet, query: str) -> QuerySet:
    if not query.strip():
        return queryset
    if connection.vendor == "sqlite":
        expression = fts_expression(query)
        if not expression:
            return queryset
        return queryset.filter(
            id__in=RawSQL(
                "SELECT rowid FROM catalog_catalogmodel_fts WHERE catalog_catalogmodel_fts MATCH %s", [expression]
            )
        )
    condition = Q()
    for word in query.split():
        condition &= Q(model_id__icontains=word) | Q(name__icontains=word) | Q(description__icontains=word)
    return queryset.filter(condition)


def search(
    query: str = "",
    source: str | None = None,
    model_type: str | None = None,
    sort: str = "downloads",
    favorites_only: bool = False,
) -> QuerySet:
    models = CatalogModel.objects.all()
    if source:
        models = models.filter(source=source)
    if model_type:
        models = models.filter(model_type=model_type)
    if favorites_only:
        models = models.filter(
            Exists(Favorite.objects.filter(source=OuterRef("source"), model_id=OuterRef("model_id")))
        )
    return text_filter(models, query).order_by(*ORDERINGS[sort])


def find(model_id: str, source: str | None = None) -> CatalogModel | None:
    models = CatalogModel.objects.filter(model_id=model_id)
    if source:
        models = models.filter(source=source)
    return models.first()


def favorite_keys(models: Iterable[CatalogModel]) -> set[tuple[str, str]]:
    ids = [m.model_id for m in models]
    return set(Favorite.objects.filter(model_id__in=ids).values_list("source", "model_id"))


def downloaded_keys(models: Iterable[CatalogModel]) -> set[tuple[str, str]]:
    ids = [m.model_id for m in models]
    completed = DownloadTask.objects.filter(model_id__in=ids, status=DownloadStatus.COMPLETED)
    return set(completed.values_list("source", "model_id"))


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
    favorites, downloaded = favorite_keys(models), downloaded_keys(models)
    return [model_to_dict(model, favorites, downloaded) for model in models]


def categories(source: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Model types with counts per source; for Ollama, capabilities (tools, vision, embedding, thinking)."""
    result: dict[str, list[dict[str, Any]]] = {}
    sources = [source] if source else ["huggingface", "ollama"]
    for name in sources:
        if name == "ollama":
            counts: dict[str, int] = {}
            for details in CatalogModel.objects.filter(source="ollama").values_list("details", flat=True):
                for capability in (details or {}).get("capabilities") or ["text"]:
                    counts[capability] = counts.get(capability, 0) + 1
            rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        else:
            grouped = (
                CatalogModel.objects.filter(source=name).exclude(model_type="")
                .values("model_type").annotate(count=Count("id")).order_by("-count", "model_type")
            )
            rows = [(row["model_type"], row["count"]) for row in grouped]
        result[name] = [{"name": type_name, "count": count} for type_name, count in rows]
    return result
