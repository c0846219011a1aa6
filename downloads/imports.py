"""Bringing in the models a machine already has: registered as completed downloads where they lie, never copied.

Each source finds the models in its own tools' store (the Hugging Face cache, Ollama's models dir) and checks
them; `local` takes a GGUF file or a model directory given by path. A model registered twice is the same record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from catalog import services as catalog
from catalog.sources import SOURCES, InvalidModelId, LocalCopy
from core.api import ApiError
from core.audit import audited
from downloads.models import DownloadFile, DownloadStatus, DownloadTask

PATH_SOURCE = "local"  # what a bare --path is taken as


@dataclass
class ImportResult:
    imported: list[DownloadTask] = field(default_factory=list)
    existing: list[DownloadTask] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # {source, model_id, problem}


@audited("models.import", target="path")
def import_models(*, path: str = "", source: str = "", name: str = "") -> ImportResult:
    """With `path`: the model there (a GGUF or model directory; or, with `source`, that source's store at `path`).
    Without: every source's store at its default place (or the named source's)."""
    if path:
        adapter = catalog.source_of(source or PATH_SOURCE)
        try:
            where = Path(path).expanduser()
            exists = where.exists()
        except (OSError, ValueError, RuntimeError) as exc:  # too long, a NUL byte, ~user of no such user…
            raise ApiError("VALIDATION_ERROR", f"path: {path[:200]!r} cannot be a path ({exc})", 400,
                           {"path": path[:200]}) from None
        if not exists:
            raise ApiError("VALIDATION_ERROR", f"path: {where} does not exist", 400, {"path": str(where)})
        try:
            found = adapter.find_local(path=where, name=name)
        except InvalidModelId as exc:
            raise ApiError("VALIDATION_ERROR", f"name: {exc}; give the model a name", 400, {"path": str(where)}) \
                from None
        if not found:
            raise ApiError("VALIDATION_ERROR", f"path: {where} holds no model {adapter.label} can read", 400,
                           {"path": str(where)})
    else:
        adapters = [catalog.source_of(source)] if source else list(SOURCES.values())
        found = [copy for adapter in adapters for copy in adapter.find_local()]
    result = ImportResult()
    for copy in found:
        if copy.problem:
            result.skipped.append({"source": copy.model.source, "model_id": copy.model.model_id,
                                   "problem": copy.problem})
            continue
        task, created = _register(copy)
        (result.imported if created else result.existing).append(task)
    return result


def _register(copy: LocalCopy) -> tuple[DownloadTask, bool]:
    model = copy.model
    existing = DownloadTask.objects.filter(source=model.source, model_id=model.model_id, imported=True,
                                           storage_path=model.storage_path, commit=model.commit).first()
    if existing:
        return existing, False
    now = timezone.now()
    with transaction.atomic():
        task = DownloadTask.objects.create(
            model_id=model.model_id, source=model.source, revision=model.revision, commit=model.commit,
            storage_path=model.storage_path, manifest=model.manifest, status=DownloadStatus.COMPLETED, imported=True,
            total_bytes=copy.total_bytes, downloaded_bytes=copy.total_bytes, started_at=now, completed_at=now)
        DownloadFile.objects.bulk_create(
            DownloadFile(task=task, path=file.path, destination=file.destination, size=file.size,
                         downloaded_bytes=file.size, media_type=file.media_type,
                         parts=[[0, file.size - 1, file.size]] if file.size else [],
                         status=DownloadFile.Status.COMPLETED)
            for file in model.files)
        catalog.record_downloaded(model=model, total_bytes=copy.total_bytes, download_task_id=task.id)
    return task, True
