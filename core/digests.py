"""Hashing files as the sources name them: sha256 (LFS files, Ollama blobs, ModelScope files) or the git blob
sha1 (Hugging Face's small files)."""

from __future__ import annotations

import hashlib
from pathlib import Path

READ_BYTES = 8 * 1024 * 1024


def new_digest(algorithm: str, size: int):
    """A running digest: `sha256`, or `git` (the git blob id, which hashes a header with the size first)."""
    if algorithm == "sha256":
        return hashlib.sha256()
    digest = hashlib.sha1()  # the git blob id the Hub uses as ETag of small files
    digest.update(b"blob %d\0" % size)
    return digest


def file_digest(path: Path, algorithm: str) -> str:
    """sha256 of the file's bytes, or (`git`) its git blob sha1."""
    digest = new_digest(algorithm, path.stat().st_size)
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
