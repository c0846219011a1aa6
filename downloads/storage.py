"""Where downloaded models live under the data dir, in the layouts their tools read.

- Hugging Face: the hub cache (`models--org--name/blobs/{etag}`, `snapshots/{commit}/{path}`
  relative symlinks, `refs/{revision}`), so `scan_cache_dir()`, transformers and vLLM find them offline.
- Ollama: `manifests/{host}/{namespace}/{model}/{tag}` (the raw manifest) and `blobs/sha256-{hex}`,
  so an Ollama daemon given the directory sees the model.

Remote names never leave the storage root: anything odd is refused with `InvalidFileName`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from django.conf import settings

from catalog.sources.ollama import parse_name

PARTIAL_SUFFIX = ".llmpart"
_SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9._+@=,~ ()\[\]{}#%&!'-]+$")
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*(:\d{1,5})?$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class InvalidFileName(ValueError):
    """A remote name that would escape the storage root or is not a plain name."""


def huggingface_root() -> Path:
    return settings.MODELS_DIR / "huggingface" / "hub"


def ollama_root() -> Path:
    return settings.MODELS_DIR / "ollama"


def _inside(root: Path, path: Path) -> Path:
    """`path`, after checking that it resolves inside `root` (links included)."""
    if not path.resolve().is_relative_to(root.resolve()):
        raise InvalidFileName(f"{path} is outside {root}")
    return path


def safe_relative_path(name: str) -> PurePosixPath:
    """A repository path made only of plain components: no `..`, no absolute path, no odd characters."""
    if not name or "\\" in name or "\x00" in name or name.startswith("/"):
        raise InvalidFileName(f"refused file name {name!r}")
    path = PurePosixPath(name)
    for part in path.parts:
        if part in (".", "..") or not _SAFE_COMPONENT.match(part):
            raise InvalidFileName(f"refused file name {name!r}")
    return path


def huggingface_repo_dir(repo_id: str) -> Path:
    if not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise InvalidFileName(f"refused repository id {repo_id!r}")
    return huggingface_root() / f"models--{repo_id.replace('/', '--')}"


def huggingface_blob(repo_id: str, etag: str) -> Path:
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", etag):
        raise InvalidFileName(f"refused blob id {etag!r}")
    return huggingface_repo_dir(repo_id) / "blobs" / etag


def huggingface_snapshot_file(repo_id: str, commit: str, path: str) -> Path:
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise InvalidFileName(f"refused commit {commit!r}")
    repo_dir = huggingface_repo_dir(repo_id)
    return _inside(repo_dir, repo_dir / "snapshots" / commit / safe_relative_path(path))


def link_snapshot(repo_id: str, commit: str, path: str, blob: Path, revision: str) -> Path:
    """Point `snapshots/{commit}/{path}` at the blob with a relative link, and `refs/{revision}` at the commit."""
    target = huggingface_snapshot_file(repo_id, commit, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(blob, target.parent)
    if target.is_symlink() or target.exists():
        target.unlink()
    target.symlink_to(relative)
    if revision and revision != commit:
        ref = huggingface_repo_dir(repo_id) / "refs" / safe_relative_path(revision)
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)
    return target


def ollama_blob(digest: str) -> Path:
    match = _DIGEST.match(digest)
    if not match:
        raise InvalidFileName(f"refused digest {digest!r}")
    return ollama_root() / "blobs" / f"sha256-{match[1]}"


def ollama_manifest(registry_host: str, model_id: str) -> Path:
    name = parse_name(model_id)
    if not _HOST.match(registry_host):
        raise InvalidFileName(f"refused registry host {registry_host!r}")
    parts = [str(safe_relative_path(part)) for part in (name.namespace, name.model, name.tag)]
    return ollama_root() / "manifests" / registry_host / Path(*parts)


def partial_path(destination: Path) -> Path:
    return destination.with_name(destination.name + PARTIAL_SUFFIX)


def disk_free_bytes() -> int:
    stats = os.statvfs(settings.MODELS_DIR)
    return stats.f_bavail * stats.f_frsize
