"""Models that are simply on this machine: a GGUF file or a directory of a transformers model, registered in place
with `llm-manager import --path` (nothing is downloaded; there is nothing to search)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from catalog.sources import (
    InvalidModelId,
    LocalCopy,
    ModelFiles,
    ModelSource,
    RemoteModel,
    RemoteModelNotFound,
    StoredFile,
    StoredModel,
    readable_name,
)
from catalog.sources.repository import WEIGHT_SUFFIXES, snapshot_model_files

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$")
MODEL_MARKERS = ("config.json", "*.gguf", *(f"*{suffix}" for suffix in WEIGHT_SUFFIXES))


class Local(ModelSource):
    name = "local"
    label = "This machine"
    searchable = False

    def canonical_id(self, model_id: str) -> str:
        if not _NAME.fullmatch(model_id) or ".." in model_id:
            raise InvalidModelId(f"{model_id!r} is not a local model name (letters, digits and . _ : + -)")
        return model_id

    def model_info(self, *, model_id: str) -> RemoteModel:
        from catalog.models import DownloadedModel  # the catalog's record is all there is to know

        found = DownloadedModel.objects.filter(source=self.name, model_id=model_id).first()
        if found is None:
            raise RemoteModelNotFound(f"{model_id} has not been imported (llm-manager import --path …)")
        files = found.stored().files
        ggufs = [f.path for f in files if f.path.lower().endswith(".gguf")]
        return RemoteModel(model_id=model_id, source=self.name, name=readable_name(model_id),
                           model_type="text-generation", size_bytes=found.total_bytes,
                           tags=["gguf"] if ggufs else [],
                           details={"path": found.storage_path,
                                    "files": [{"path": f.path, "size": f.size} for f in files]})

    def download_plan(self, *, model_id: str, revision: str, include: list[str]):
        raise RemoteModelNotFound(f"{model_id}: local models are imported in place (llm-manager import --path), "
                                  "not downloaded")

    def find_local(self, *, path: Path | None = None, name: str = "") -> list[LocalCopy]:
        """The model at `path`: a GGUF file, or a directory holding a config.json, GGUF or weights."""
        if path is None:
            return []
        path = path.expanduser().resolve()
        if path.is_file() and path.suffix.lower() == ".gguf":
            root, members = path.parent, [path]
        elif path.is_dir() and any(next(path.glob(marker), None) for marker in MODEL_MARKERS):
            root, members = path, sorted(item for item in path.rglob("*") if item.is_file())
        else:
            return []
        files = [StoredFile(path=member.relative_to(root).as_posix(), destination=str(member),
                            size=member.stat().st_size) for member in members]
        model_id = self.canonical_id(name or (path.stem if path.is_file() else path.name))
        model = StoredModel(model_id=model_id, source=self.name, revision="", commit="", storage_path=str(root),
                            files=files)
        return [LocalCopy(model=model, total_bytes=sum(f.size for f in files))]

    def remove(self, *, model: StoredModel, in_use: Callable[[Path], bool]) -> list[str]:
        """Only the files the import recorded (a directory the model shares with other files stays)."""
        removed = []
        for file in model.files:
            if not in_use(Path(file.destination)):
                Path(file.destination).unlink(missing_ok=True)
                removed.append(file.destination)
        return removed

    def model_files(self, *, model: StoredModel, file: str = "", quantization: str = "") -> ModelFiles:
        return snapshot_model_files(model, Path(model.storage_path), {}, file=file, quantization=quantization)


SOURCE = Local()
