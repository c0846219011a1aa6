"""Catalog queries: full-text search, lookups, downloaded models, counts."""

from __future__ import annotations

import re
from typing import Any, Iterable

from django.conf import settings
from django.db import connection
from django.db.models import BooleanField, Count, Exists, OuterRef, Q, QuerySet, Sum
from django.db.models.expressions import RawSQL
from prometheus_client import Counter

from catalog.models import CatalogModel, DownloadedModel, Favorite, SyncJob
from catalog.search_index import INDEX, ORDERINGS, in_sort_order
from catalog.sources import SEARCHABLE, SOURCES, StoredModel
from core.api import Page, paginate

SEARCHES = Counter("llm_manager_catalog_searches", "Catalog searches, by what answered them: the search index or "
                   "the database (while the index is built again after a change, or for what it cannot answer)",
                   ["answered_by"])
FTS_TABLE = "catalog_catalogmodel_fts"
_NOT_WORD = re.compile(r"[^\w]+", re.UNICODE)


def _phrase(text: str) -> str:
    return " ".join(_NOT_WORD.sub(" ", text).split())


def fts_expression(query: str) -> str:
    """Each word of the query as a prefix phrase, all required: `llama3.2 chat` → `"llama3 2"* AND "chat"*`."""
    phrases = [_phrase(word) for word in query.split()]
    return " AND ".join(f'"{phrase}"*' for phrase in phrases if phrase)


def fts_filters(filters: list[tuple[str, str]]) -> str:
    """The filters as column phrases of the index (`AND source:"…"`): narrowing the matches inside the
    index is cheaper than checking each match's row. A type's phrase also matches longer types that
    contain it (`text generation` is in `text generation inference`), so rows are still checked for it."""
    phrases = [(name, _phrase(value)) for name, value in filters]
    return "".join(f' AND {name}:"{phrase}"' for name, phrase in phrases if phrase)


_NOT_LETTER_OR_DIGIT = re.compile(r"[\W_]+", re.UNICODE)


def tsquery(query: str) -> str:
    """fts_expression for PostgreSQL's to_tsquery: each word a prefix phrase, all required:
    `llama3.2 chat` → `(llama3 <-> 2:*) & (chat:*)`. The words are cut as the stored vector's are (see catalog
    migration 0005), so the two databases find the same entries."""
    phrases = []
    for word in query.split():
        tokens = [token.lower() for token in _NOT_LETTER_OR_DIGIT.split(word) if token]
        if tokens:
            phrases.append("(" + " <-> ".join([*tokens[:-1], f"{tokens[-1]}:*"]) + ")")
    return " & ".join(phrases)


def _full_text() -> str | None:
    """The full-text index that answers searches: `fts5` (SQLite), `tsvector` (PostgreSQL), or none (LIKE)."""
    if settings.CATALOG_SEARCH_BACKEND == "like":
        return None
    return {"sqlite": "fts5", "postgresql": "tsvector"}.get(connection.vendor)


def _uses_fts() -> bool:
    return _full_text() == "fts5"


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
    full_text = _full_text()
    if full_text == "fts5":
        expression = fts_expression(query)
        if expression:
            match = f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s"
            models = models.filter(id__in=RawSQL(match, [expression]))
    elif full_text == "tsvector":
        expression = tsquery(query)
        if expression:
            models = models.filter(RawSQL("search_vector @@ to_tsquery('simple'::regconfig, %s)", [expression],
                                          output_field=BooleanField()))
    else:
        for word in query.split():
            models = models.filter(
                Q(model_id__icontains=word) | Q(name__icontains=word) | Q(description__icontains=word)
            )
    return in_sort_order(models, sort)


# Walking the sort index costs about this many times what sorting one match costs, per row walked (measured at
# 200,000 and 1,000,000 entries: ~0.35 µs a row walked, ~1 µs a match sorted through the ranking index).
WALK_COST = 0.4


def _walks(matches: int, rows_wanted: int, catalog_size: int) -> bool:
    """Whether walking the sort index beats sorting the matches: a walk reads about rows_wanted × size / matches
    rows before it has the page, a sort reads each match once."""
    return matches * matches > rows_wanted * catalog_size * WALK_COST


def _type_phrase_is_exact(cursor, model_type: str) -> bool:
    """Whether the index's phrase for `model_type` finds that type alone: no other type in the catalog holds its
    words in a row (`text generation` is in `text generation inference`). The types are read by skipping along
    their index, a lookup per type."""
    cursor.execute(
        "WITH RECURSIVE types(name) AS (SELECT min(model_type) FROM catalog_catalogmodel INDEXED BY catalog_type "
        "UNION ALL SELECT (SELECT min(model_type) FROM catalog_catalogmodel INDEXED BY catalog_type "
        "WHERE model_type > types.name) FROM types WHERE types.name IS NOT NULL) "
        "SELECT name FROM types WHERE name IS NOT NULL")
    wanted = f" {_phrase(model_type).lower()} "
    return not any(wanted in f" {_phrase(name).lower()} " for (name,) in cursor.fetchall() if name != model_type)


def search_page(
    query: str, source: str | None, model_type: str | None, sort: str, favorites_only: bool, page: int, page_size: int
) -> Page:
    """One page of `search`: from the search index when it holds the catalog as it is now, otherwise from the
    database, planned for SQLite so that a million entries still answer in tens of milliseconds.

    There the full-text index counts the matches. Many of them (for the catalog's size and the page): walk the
    index of the sort order (it carries the filter columns) and stop after the page. Few: sort just those, through
    the narrow ranking index. Other databases use the ORM query.
    """
    index = INDEX.current() if settings.CATALOG_SEARCH_BACKEND == "index" and not favorites_only else None
    found = index.search(query=query, source=source, model_type=model_type, sort=sort,
                         offset=(page - 1) * page_size, limit=page_size) if index else None
    SEARCHES.labels("database" if found is None else "index").inc()
    if found is not None:
        return _page_of(*found, page, page_size)
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
        if expression and (not model_type or _type_phrase_is_exact(cursor, model_type)):
            # Sources are one exact word each, and the type's phrase finds that type alone: the index's count
            # is the answer.
            cursor.execute(f"SELECT count(*) FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s", [expression])
            total = cursor.fetchone()[0]
        elif expression:
            cursor.execute(f"SELECT count(*) FROM catalog_catalogmodel INDEXED BY catalog_rank WHERE {where}", params)
            total = cursor.fetchone()[0]
        else:
            total = search("", source, model_type).count()
        cursor.execute("SELECT max(id) FROM catalog_catalogmodel")  # the catalog's size, near enough, at once
        catalog_size = cursor.fetchone()[0] or 0
        column = ORDERINGS[sort]
        if _walks(total, page * page_size, catalog_size):
            index = f"INDEXED BY catalog_{sort}"
        else:
            index = "INDEXED BY catalog_rank" if expression else ""
        cursor.execute(
            f"SELECT id FROM catalog_catalogmodel {index} WHERE {where} "
            f"ORDER BY {column} DESC, id DESC LIMIT %s OFFSET %s",
            [*params, page_size, (page - 1) * page_size],
        )
        ids = [row[0] for row in cursor.fetchall()]
    return _page_of(ids, total, page, page_size)


def _page_of(ids: list[int], total: int, page: int, page_size: int) -> Page:
    """The entries of `ids` in that order (one that was deleted meanwhile left out)."""
    rows = CatalogModel.objects.in_bulk(ids)
    return Page([rows[i] for i in ids if i in rows], page, page_size, total)


def find(model_id: str, source: str | None = None) -> CatalogModel | None:
    models = CatalogModel.objects.filter(model_id=model_id)
    if source:
        models = models.filter(source=source)
    return models.first()


def trending(*, source: str | None, limit: int) -> list[CatalogModel]:
    """The most trending models, the sources taking turns, each source in its own trending order."""
    per_source = [list(search(source=name, sort=adapter.trending_sort)[:limit])
                  for name, adapter in SEARCHABLE.items() if not source or name == source]
    longest = max((len(models) for models in per_source), default=0)
    return [models[i] for i in range(longest) for models in per_source if i < len(models)][:limit]


def favorite_keys(models: Iterable[CatalogModel]) -> set[tuple[str, str]]:
    ids = [m.model_id for m in models]
    return set(Favorite.objects.filter(model_id__in=ids).values_list("source", "model_id"))


def downloaded_keys(models: Iterable[CatalogModel]) -> set[tuple[str, str]]:
    ids = [m.model_id for m in models]
    return set(DownloadedModel.objects.filter(model_id__in=ids).values_list("source", "model_id"))


def downloaded_model(*, model_id: str, source: str) -> StoredModel | None:
    """A model complete on disk, as its source needs it to hand it on; None if it is not downloaded."""
    found = DownloadedModel.objects.filter(source=source, model_id=model_id).first()
    return found.stored() if found else None


def downloaded_models() -> list[DownloadedModel]:
    return list(DownloadedModel.objects.order_by("source", "model_id"))


def downloaded_choices() -> list[tuple[str, str]]:
    """(source, model_id) of every downloaded model, by source then id."""
    return list(DownloadedModel.objects.order_by("source", "model_id").values_list("source", "model_id"))


def sync_job(job_id: int) -> SyncJob | None:
    if not 0 < job_id < 2**63:  # an id no database row can have (SQLite would overflow on it)
        return None
    return SyncJob.objects.filter(id=job_id).first()


def categories(source: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Model types with counts per source, each source grouping its entries its own way."""
    names = [source] if source else list(SOURCES)
    return {name: [{"name": type_name, "count": count}
                   for type_name, count in SOURCES[name].categories(CatalogModel.objects.filter(source=name))]
            for name in names}


def stats() -> dict[str, Any]:
    """Catalog counts by source and type, favorites, downloaded models and the last sync per source."""
    by_source = dict(CatalogModel.objects.values_list("source").annotate(count=Count("id")))
    by_type: dict[str, dict[str, int]] = {}
    for row in CatalogModel.objects.values("source", "model_type").annotate(count=Count("id")):
        by_type.setdefault(row["source"], {})[row["model_type"] or "unknown"] = row["count"]
    last_sync = {}
    for name in SEARCHABLE:
        job = SyncJob.objects.filter(source=name, finished_at__isnull=False).order_by("-finished_at").first()
        last_sync[name] = (
            {"finished_at": job.finished_at, "status": job.status, "added": job.added, "updated": job.updated,
             "failed": job.failed, "error": job.error or None}
            if job else None
        )
    return {
        "total": sum(by_source.values()),
        "by_source": {name: by_source.get(name, 0) for name in SOURCES},
        "by_type": by_type,
        "favorites": Favorite.objects.count(),
        "downloaded_models": DownloadedModel.objects.count(),
        "downloaded_bytes": DownloadedModel.objects.aggregate(total=Sum("total_bytes"))["total"] or 0,
        "last_sync": last_sync,
    }
