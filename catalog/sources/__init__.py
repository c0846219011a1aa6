"""Source adapters: one module per model source, each speaking that source's protocol.

An adapter turns the source's answers into `RemoteModel` records; the catalog
services store them and answer searches from the local catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class SourceError(Exception):
    """The source could not answer (unreachable, timed out, or an unexpected reply)."""


class RemoteModelNotFound(SourceError):
    """The source answered that the model does not exist."""


class RemoteModelGated(SourceError):
    """The repository is gated and the configured token (if any) may not read it."""


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


@dataclass
class RemoteFile:
    """One file to download: where it is, how big, and what its bytes must hash to."""

    path: str  # path in the repository, or the layer digest
    url: str
    size: int
    sha256: str = ""  # LFS files and Ollama blobs
    git_sha1: str = ""  # small Hugging Face files: the git blob id (their ETag)
    media_type: str = ""


@dataclass
class DownloadPlan:
    """What a download of one model fetches. `revision` is the resolved commit (HF) or tag (Ollama)."""

    model_id: str
    source: str
    revision: str
    files: list[RemoteFile]
    manifest: bytes = b""  # Ollama: the raw manifest, stored as it came
    registry_host: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)
