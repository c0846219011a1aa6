"""Model sources: one module per source, each defining `SOURCE`, an instance of a `ModelSource` subclass.

A source owns everything that differs from one place models come from to another: how an id
is recognised and written, search and info, the download plan (which files, from where, how
big, what they hash to, where each goes on disk), how a completed model is put in place and
removed, and how it is handed to an engine (`ModelFiles`). The apps above speak to sources only
through this contract, chosen once by name (`SOURCES[name]`), never branched on. Adding a source is
adding a module here, like `deployments/engines/`; docs/architecture.md has the recipe.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import Any, Callable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet

from core.plugins import discover


class SourceError(Exception):
    """The source could not answer (unreachable, timed out, or an unexpected reply)."""


class RemoteModelNotFound(SourceError):
    """The source answered that the model does not exist."""


class RemoteModelGated(SourceError):
    """The repository is gated and the configured token (if any) may not read it."""


class InvalidModelId(ValueError):
    """An id that cannot name a model of the source (a bad shape, `..`, control characters)."""


class Claim(IntEnum):
    """How surely an id without a named source belongs to a source."""

    NO = 0
    LIKELY = 1  # its shape fits; the catalog's knowledge wins over it
    CERTAIN = 2  # only this source writes ids so


@dataclass
class RemoteModel:
    """One model as a source describes it, in the catalog's terms."""

    model_id: str
    source: str
    name: str = ""
    description: str = ""
    model_type: str = ""
    parameters: str = ""
    size_bytes: int | None = None
    downloads: int = 0
    likes: int = 0
    trending_score: float = 0.0
    tags: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class RemoteFile:
    """One file to download: where it is, how big, what its bytes must hash to, and where it goes."""

    path: str  # path in the repository, or the layer digest
    url: str
    size: int
    destination: Path  # its final place under the source's root
    sha256: str = ""
    git_sha1: str = ""  # small Hugging Face files: the git blob id (their ETag)
    media_type: str = ""


@dataclass
class DownloadPlan:
    """What a download of one model fetches, and where the finished model lives."""

    model_id: str  # canonical
    source: str
    revision: str  # the resolved commit, tag or branch the files come from
    files: list[RemoteFile]
    storage_path: Path
    manifest: bytes = b""  # what the source writes beside the files when the model is put in place

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass
class StoredFile:
    """One file of a downloaded model, where it is on disk."""

    path: str
    destination: str
    size: int
    media_type: str = ""


@dataclass
class StoredModel:
    """A downloaded model as the catalog records it: what a source needs to place, remove or hand it on."""

    model_id: str
    source: str
    revision: str
    commit: str
    storage_path: str
    files: list[StoredFile]
    manifest: str = ""


@dataclass
class LocalCopy:
    """A model found already on this machine, in the store of the source's own tools; `problem` says why it cannot
    be registered (a missing blob, a size or digest that does not match), empty when it can."""

    model: StoredModel
    total_bytes: int
    problem: str = ""


@dataclass
class ModelFiles:
    """A downloaded model as an engine needs it."""

    model_id: str
    source: str
    format: str  # "gguf" or "safetensors" (which also covers PyTorch .bin weights)
    path: Path  # the GGUF file, or the snapshot directory
    weights_bytes: int
    # A chat template in Go's text/template syntax shipped apart from the weights (Ollama's template layer).
    go_chat_template: str = ""
    # A tokenizer_config.json carrying a chat template as Jinja, for a GGUF that has no template of its own.
    chat_template_file: Path | None = None
    chat_template_problem: str = ""  # why there is no chat template an engine can read, where there is none
    config: dict = field(default_factory=dict)  # config.json of a transformers model
    env: dict[str, str] = field(default_factory=dict)  # what an engine's environment needs to read it offline
    file: str = ""  # the model file chosen among several (its path in the repository), and why
    file_reason: str = ""


class ModelFileChoiceError(Exception):
    """The model file asked for is not there, or none can be picked for the caller: `code` is the API's error code,
    `choices` the files to choose from."""

    def __init__(self, code: str, message: str, choices: list[str]):
        super().__init__(message)
        self.code = code
        self.choices = choices


class ModelSource:
    """The contract of a model source. Subclasses set the attributes and implement the methods that raise."""

    name: str  # the `source` value of the API and the database
    label: str  # for people
    default_revision: str = ""  # "" when ids carry their version (a tag) and there are no revisions
    selects_files: bool = False  # whether a download may choose files with `include` globs
    trending_sort: str = "trending"  # the catalog order that stands for "trending" here
    searchable: bool = True  # whether it has a remote catalog to search, sync and take trending models from

    def claims(self, model_id: str) -> Claim:
        """Whether an id given without a source is one of ours."""
        return Claim.NO

    def canonical_id(self, model_id: str) -> str:
        """The id as the source writes it (`llama3.2` → `llama3.2:latest`); InvalidModelId if it cannot be one."""
        raise NotImplementedError

    def search(self, *, query: str = "", model_type: str = "", sort: str = "downloads",
               limit: int = 50) -> list[RemoteModel]:
        raise NotImplementedError

    def model_info(self, *, model_id: str) -> RemoteModel:
        raise NotImplementedError

    def download_plan(self, *, model_id: str, revision: str, include: list[str]) -> DownloadPlan:
        raise NotImplementedError

    def authorization(self) -> str | None:
        """The Authorization header for file requests to the source's own host (never stored, never sent to a
        host a redirect leads to)."""
        return None

    def put_in_place(self, *, model: StoredModel) -> None:
        """After every file is at its destination and verified: whatever else the source's tools expect."""

    def remove(self, *, model: StoredModel, in_use: Callable[[Path], bool]) -> list[str]:
        """Remove what a download put on disk, keeping anything `in_use` (another download's files lie at or
        under that path). Returns the removed paths. By default the whole storage path goes, unless in use."""
        root = Path(model.storage_path)
        if not model.storage_path or in_use(root):
            return []
        shutil.rmtree(root, ignore_errors=True)
        return [str(root)]

    def model_files(self, *, model: StoredModel, file: str = "", quantization: str = "") -> ModelFiles:
        """The model as an engine takes it; `file` or `quantization` chooses among several model files
        (ModelFileChoiceError when that choice cannot be made)."""
        raise NotImplementedError

    def find_local(self, *, path: Path | None = None, name: str = "") -> list[LocalCopy]:
        """Models already on this machine in the store this source's own tools keep (`path`, or that store's
        default place), checked but not copied: `llm-manager import` registers them. `name` names a model
        found where the store gives none. None by default."""
        return []

    def categories(self, entries: QuerySet) -> list[tuple[str, int]]:
        """(type, count) of this source's catalog entries, most first."""
        grouped = (entries.exclude(model_type="").values("model_type").annotate(count=Count("id"))
                   .order_by("-count", "model_type"))
        return [(row["model_type"], row["count"]) for row in grouped]

    def root(self) -> Path:
        """Where this source's models live under the data dir."""
        return settings.MODELS_DIR / self.name

    def __repr__(self) -> str:
        return f"<source {self.name}>"


def format_parameters(count: int | float | None) -> str:
    """117M, 1.5B, 7B: how people write parameter counts."""
    if not count:
        return ""
    for divisor, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= divisor:
            value = count / divisor
            text = f"{value:.0f}" if value >= 100 or value == int(value) else f"{value:.1f}".rstrip("0").rstrip(".")
            return f"{text}{suffix}"
    return str(int(count))


def readable_name(repo_name: str) -> str:
    """`DialoGPT-medium` → `DialoGPT Medium`; words already capitalised keep their case."""
    words = repo_name.replace("_", " ").replace("-", " ").split()
    return " ".join(word if any(c.isupper() for c in word) else word.capitalize() for word in words)


SOURCES: dict[str, ModelSource] = discover(__name__, __path__, "SOURCE", ModelSource)
SEARCHABLE: dict[str, ModelSource] = {name: source for name, source in SOURCES.items() if source.searchable}


def validate_source_name(value: str) -> None:
    """A model field's validator: the name of a known source."""
    if value not in SOURCES:
        raise ValidationError(f"unknown source {value!r} (known: {', '.join(SOURCES)})")
