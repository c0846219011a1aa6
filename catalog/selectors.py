"""Catalog queries: full-text search, lookups and the public shape of catalog entries."""

from __future__ import annotations

import re
from typing import Any, Iterable

from django.conf import settings
from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL

from catalog.models import CatalogModel, Favorite
from downloads.models import DownloadStatus, DownloadTask
from llm_manager.api import Page, paginate, utc_timestamp

ORDERINGS = {
    "downloads": "downloads",
    "likes": "likes",
    "updated": "updated_at",
    "trending": "trending_score",
}
FTS_TABLE = "catalog_catalogmodel_fts"
_NOT_WORD = re.compile(r"[^\w]+", re.UNICODE)


def _phrase(text: str) -> str:
    return " ".join(_NOT_WORD.sub(" ", text).split())


def fts_expression(query: str) -> str:
    """Each word of the query as a prefix phrase, all required: `llama3.2 chat` → `"llama3 2"* AND "chat"*`."""
    phrases = [_phrase(word) for word in query.split()]
    return " AND ".join(f'"{phrase}"*' for phrase in phrases if phrase)


def fts_filters(filters: list[tuple[str, str]]) -> str:
    """The filters as column phrases of the index (`AND source:"ollama"`): narrowing the matches inside the
    index is cheaper than checking each match's row. A type's phrase also matches longer types that
    contain it (`text generation` is in `text generation inference`), so rows are still checked for it."""
    phrases = [(name, _phrase(value)) for name, value in filters]
    return "".join(f' AND {name}:"{phrase}"' for name, phrase in phrases if phrase)


def _uses_fts() -> bool:
    return connection.vendor == "sqlite" and settings.CATALOG_SEARCH_BACKEND == "fts"


def search(
    query: str = "",
    source: str | None = None,
    model_type: str | None = None,
    sort: str = "downloads",
    favorites_only: bool = False,
) -> QuerySet:
    """Catalog entries matching the query and filters, best first by `sort`."""
    models = CatalogModel.objects.all()
    if source:
        models = models.filter(source=source)
    if model_type:
        models = models.filter(model_type=model_type)
    if favorites_only:
        models = models.filter(
            Exists(Favorite.objects.filter(source=OuterRef("source"), model_id=OuterRef("model_id")))
        )
    if _uses_fts():
        expression = fts_expression(query)
        if expression:
            match = f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s"
            models = models.filter(id__in=RawSQL(match, [expression]))
    else:
        for word in query.split():
            models = models.filter(
                Q(model_id__icontains=word) | Q(name__icontains=word) | Q(description__icontains=word)
            )
    # SQLite already sorts NULLs last when descending, and only then can an index give the order.
    order = F(ORDERINGS[sort]).desc(nulls_last=True if connection.vendor != "sqlite" else None)
    return models.order_by(order, "-id")


# Below this many matches, sorting the matches is cheapest; above it, walking the sort index is.
FEW_MATCHES = 500


def search_page(
    query: str, source: str | None, model_type: str | None, sort: str, favorites_only: bool, page: int, page_size: int
) -> Page:
    """One page of `search`, planned for SQLite so that 200,000 entries still answer in milliseconds.

    The full-text index counts the matches. Many matches: walk the index of the sort
    order (it carries the filter columns) and stop after the page. Few matches: sort
    just those, through the narrow ranking index. Other databases use the ORM query.
    """
    if favorites_only or not _uses_fts():
        return paginate(search(query, source, model_type, sort, favorites_only), page, page_size)
    # With a query, the filters narrow the matches inside the index too; without one, a filter alone
    # (a term as common as a source) costs more there than walking the sort index.
    expression = fts_expression(query)
    filters = [(name, value) for name, value in (("source", source), ("model_type", model_type)) if value]
    conditions = [f"{name} = %s" for name, _ in filters]
    params: list = [value for _, value in filters]
    if expression:
        expression += fts_filters(filters)
        conditions.insert(0, f"id IN (SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s)")
        params.insert(0, expression)
    where = " AND ".join(conditions) or "1"
    with connection.cursor() as cursor:
        if expression and not model_type:
            # Sources are one exact word each: the index's count is the answer.
            cursor.execute(f"SELECT count(*) FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s", [expression])
            total = cursor.fetchone()[0]
        elif expression:
            cursor.execute(f"SELECT count(*) FROM catalog_catalogmodel INDEXED BY catalog_rank WHERE {where}", params)
            total = cursor.fetchone()[0]
        else:
            total = search("", source, model_type).count()
        column = ORDERINGS[sort]
        if total >= FEW_MATCHES:
            index = f"INDEXED BY catalog_{sort}"
        else:
            index = "INDEXED BY catalog_rank" if expression else ""
        cursor.execute(
            f"SELECT id FROM catalog_catalogmodel {index} WHERE {where} "
            f"ORDER BY {column} DESC, id DESC LIMIT %s OFFSET %s",
            [*params, page_size, (page - 1) * page_size],
        )
        ids = [row[0] for row in cursor.fetchall()]
    rows = CatalogModel.objects.in_bulk(ids)
    return Page([rows[i] for i in ids if i in rows], page, page_size, total)


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
