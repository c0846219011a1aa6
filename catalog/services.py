"""Catalog business logic: ask the live sources, keep the local catalog, answer from it."""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict
from typing import Callable

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections, transaction
from django.utils import timezone

from catalog import selectors
from catalog.models import CatalogModel, DownloadedModel, Favorite, SyncJob
from catalog.sources import (
    SEARCHABLE,
    SOURCES,
    Claim,
    InvalidModelId,
    ModelSource,
    RemoteModel,
    RemoteModelGated,
    RemoteModelNotFound,
    SourceError,
    StoredModel,
)
from core.api import ApiError, Page
from core.audit import audited
from core.host import refresh_query_planner_statistics

logger = logging.getLogger(__name__)

# Live lookups run here so a slow source can be abandoned after the timeout
# while its answer still lands in the catalog for the next search.
_live_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="catalog-live")


def validate_source(source: str | None) -> str | None:
    if source and source not in SOURCES:
        raise ApiError("INVALID_SOURCE", f"Unknown source {source!r}: use one of {', '.join(SOURCES)}", 400)
    return source or None


def source_of(name: str) -> ModelSource:
    """The source of that name, INVALID_SOURCE (400) for an unknown one."""
    validate_source(name)
    return SOURCES[name]


def canonical_id(*, model_id: str, source: str) -> str:
    """The id as its source writes it; 400 VALIDATION_ERROR for an id that cannot name one of its models."""
    try:
        return source_of(source).canonical_id(model_id)
    except InvalidModelId as exc:
        raise ApiError("VALIDATION_ERROR", f"model_id: {exc}", 400) from None


def store(*, remote_models: list[RemoteModel]) -> tuple[int, int]:
    """Upsert what a source said; keep what we knew that this answer lacks. Returns (added, updated)."""
    added = updated = 0
    now = timezone.now()
    with transaction.atomic():
        for remote in remote_models:
            fields = asdict(remote)
            model_id, source = fields.pop("model_id"), fields.pop("source")
            existing = CatalogModel.objects.filter(source=source, model_id=model_id).first()
            if existing is None:
                CatalogModel.objects.create(model_id=model_id, source=source, last_synced_at=now, **fields)
                added += 1
                continue
            for name, value in fields.items():
                if name == "details":
                    value = {**existing.details, **value}
                    value.pop("seeded", None)
                if value not in (None, "", [], {}) or name in ("downloads", "likes"):
                    setattr(existing, name, value)
            existing.last_synced_at = now
            existing.save()
            updated += 1
    return added, updated


def _fetch_and_store(fetch: Callable[[], list[RemoteModel]]) -> None:
    try:
        store(remote_models=fetch())
    finally:
        close_old_connections()


def refresh_from_sources(*, query: str, source: str | None, model_type: str | None, sort: str,
                         limit: int) -> list[str]:
    """Ask each selected source live, in parallel, unless asked the same within the TTL.

    Returns the sources that failed or did not answer within the timeout (all of them in offline mode).
    """
    if settings.CATALOG_OFFLINE:
        return [name for name in SEARCHABLE if not source or name == source]
    asked = {}
    for name, adapter in SEARCHABLE.items():
        if source and name != source:
            continue
        question = f"{query}|{model_type or ''}|{sort}|{limit}"
        cache_key = f"catalog:asked:{name}:{hashlib.sha1(question.encode()).hexdigest()}"
        if cache.get(cache_key):
            continue
        fetch = (lambda a=adapter: a.search(query=query, model_type=model_type or "", sort=sort, limit=limit))
        asked[name] = (cache_key, _live_pool.submit(_fetch_and_store, fetch))
    deadline = time.monotonic() + settings.CATALOG_SOURCE_TIMEOUT
    failed = []
    for name, (cache_key, future) in asked.items():
        try:
            future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            logger.warning("%s did not answer in %ss; the catalog answers alone", name, settings.CATALOG_SOURCE_TIMEOUT)
            failed.append(name)
        except Exception as exc:
            logger.warning("%s failed (%s); the catalog answers alone", name, exc, exc_info=not isinstance(exc, SourceError))
            failed.append(name)
        else:
            cache.set(cache_key, True, settings.CATALOG_LIVE_TTL)
    return failed


def search(*, query: str, source: str | None, model_type: str | None, sort: str, favorites_only: bool, page: int,
           page_size: int) -> tuple[Page, list[str]]:
    """(one page of matches, the sources that could not be asked): the live sources first, then the catalog."""
    failed = []
    if not favorites_only:
        limit = min(100, max(50, page * page_size))
        failed = refresh_from_sources(query=query, source=source, model_type=model_type, sort=sort, limit=limit)
    return selectors.search_page(query, source, model_type, sort, favorites_only, page, page_size), failed


def offline_message(failed: list[str]) -> str:
    if settings.CATALOG_OFFLINE:
        return "Offline mode (LLM_MANAGER_OFFLINE): results come from the local catalog"
    return f"{' and '.join(failed)} could not be reached; results come from the local catalog"


def resolve_source(model_id: str, source: str | None) -> str:
    """The source of a model id: the one given; else one only it writes ids so; else the one the catalog knows it
    from; else the first whose id shape fits."""
    if source:
        return source
    claims = {name: adapter.claims(model_id) for name, adapter in SOURCES.items()}
    certain = [name for name, claim in claims.items() if claim == Claim.CERTAIN]
    if certain:
        return certain[0]
    known = selectors.find(model_id)
    if known:
        return known.source
    likely = [name for name, claim in claims.items() if claim == Claim.LIKELY]
    if not likely:
        raise ApiError("INVALID_SOURCE", f"Which source {model_id!r} comes from cannot be told: name one of "
                       f"{', '.join(SOURCES)}", 400)
    return likely[0]


def model_info(*, model_id: str, source: str | None = None) -> tuple[CatalogModel, bool]:
    """The model, refreshed from its source; (model, offline) where offline means the catalog answered alone. An id
    its source cannot have is refused at once (400 VALIDATION_ERROR)."""
    source = resolve_source(model_id, source)
    canonical_id(model_id=model_id, source=source)
    if settings.CATALOG_OFFLINE:
        known = selectors.find(model_id, source)
        if known is None:
            raise ApiError("MODEL_NOT_FOUND", f"{model_id} is not in the catalog (offline mode)", 404)
        return known, True
    try:
        remote = _live_pool.submit(SOURCES[source].model_info, model_id=model_id).result(
            timeout=settings.CATALOG_SOURCE_TIMEOUT * 3)
    except RemoteModelNotFound:
        raise ApiError("MODEL_NOT_FOUND", f"Model {model_id} was not found on {source}", 404) from None
    except RemoteModelGated as exc:
        known = selectors.find(model_id, source)
        if known:
            return known, False
        raise ApiError("GATED_MODEL", str(exc), 403) from None
    except Exception as exc:  # unreachable, too slow or a reply we could not read
        logger.warning("%s info for %s failed: %s", source, model_id, exc, exc_info=not isinstance(exc, (SourceError, FutureTimeout)))
        known = selectors.find(model_id, source)
        if known is None:
            raise ApiError("SOURCE_UNAVAILABLE", f"{source} could not be reached and {model_id} is not in the catalog: {exc}", 503) from None
        return known, True
    store(remote_models=[remote])
    return selectors.find(remote.model_id, source), False


@audited("favorite.add", target="model_id")
def add_favorite(*, model_id: str, source: str | None) -> tuple[Favorite, bool]:
    """Favorite a model (looking it up at its source if the catalog lacks it); (favorite, created)."""
    source = resolve_source(model_id, source)
    existing = Favorite.objects.filter(source=source, model_id=model_id).first()
    if existing:
        return existing, False
    if selectors.find(model_id, source) is None:
        model, _ = model_info(model_id=model_id, source=source)
        model_id = model.model_id
    favorite, created = Favorite.objects.get_or_create(source=source, model_id=model_id)
    return favorite, created


@audited("favorite.remove", target="model_id")
def remove_favorite(*, model_id: str, source: str | None) -> None:
    favorites = Favorite.objects.filter(model_id=model_id)
    if source:
        favorites = favorites.filter(source=source)
    deleted, _ = favorites.delete()
    if not deleted:
        raise ApiError("MODEL_NOT_FOUND", f"{model_id} is not a favorite", 404)


# --- Downloaded models ---------------------------------------------------------------------------


def record_downloaded(*, model: StoredModel, total_bytes: int, download_task_id: str) -> DownloadedModel:
    """Note that a model is complete on disk (the download that finished last describes it)."""
    fields = {"revision": model.revision, "commit": model.commit, "storage_path": model.storage_path,
              "files": [asdict(file) for file in model.files], "manifest": model.manifest,
              "total_bytes": total_bytes, "download_task_id": download_task_id, "completed_at": timezone.now()}
    downloaded, _ = DownloadedModel.objects.update_or_create(source=model.source, model_id=model.model_id,
                                                             defaults=fields)
    return downloaded


def forget_downloaded(*, model_id: str, source: str) -> None:
    DownloadedModel.objects.filter(source=source, model_id=model_id).delete()


# --- Sync jobs -----------------------------------------------------------------------------------


@audited("catalog.sync", target="source")
def create_sync_jobs(*, source: str | None, limit: int, dispatch: bool = True) -> list[SyncJob]:
    """One sync job per source (or for the one named); with `dispatch`, the workers run them."""
    from django_q.tasks import async_task

    if source and source not in SEARCHABLE:
        raise ApiError("INVALID_SOURCE", f"{source} has nothing to sync (its models are imported)", 400)
    jobs = [SyncJob.objects.create(source=name, limit=limit) for name in SEARCHABLE if not source or name == source]
    if dispatch:
        for job in jobs:
            async_task("catalog.services.run_sync_job", job.id, task_name=f"sync-{job.source}-{job.id}")
    return jobs


def run_sync_job(job_id: int, *, progress: Callable[[int, int], None] | None = None) -> SyncJob:
    """Fetch up to `limit` models from the job's source and store them one by one, counting the outcome."""
    job = SyncJob.objects.get(id=job_id)
    job.status, job.started_at = SyncJob.Status.RUNNING, timezone.now()
    job.save(update_fields=["status", "started_at"])
    try:
        remote_models = SOURCES[job.source].search(limit=job.limit)
    except SourceError as exc:
        job.status, job.error = SyncJob.Status.FAILED, str(exc)
    else:
        for index, remote in enumerate(remote_models, start=1):
            try:
                added, updated = store(remote_models=[remote])
                job.added += added
                job.updated += updated
            except Exception as exc:  # one bad record must not lose the rest
                logger.warning("sync of %s failed: %s", remote.model_id, exc)
                job.failed += 1
            if progress:
                progress(index, len(remote_models))
        job.status = SyncJob.Status.COMPLETED
    job.finished_at = timezone.now()
    job.save()
    refresh_query_planner_statistics()
    return job
