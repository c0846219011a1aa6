"""Remote names made safe for the disk: a name a source sends never leaves the storage root."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

# ':' too: Ollama keeps a registry's manifests under `manifests/HOST:PORT/…`, and on POSIX it is a plain character.
_SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9._+@=,~ ()\[\]{}#%&!:'-]+$")


class InvalidFileName(ValueError):
    """A remote name that would escape the storage root or is not a plain name."""


def inside(root: Path, path: Path) -> Path:
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
        if part in (".", "..") or not _SAFE_COMPONENT.fullmatch(part):
            raise InvalidFileName(f"refused file name {name!r}")
    return path
