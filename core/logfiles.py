"""Reading the end of a log file without reading the file (no Django: Ray workers on other nodes use it too)."""

from __future__ import annotations

import os
from pathlib import Path


def tail_lines(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a file, read backwards in blocks (never the whole file)."""
    if not path.exists():
        return []
    block, data = 64 * 1024, b""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        position = handle.tell()
        while position > 0 and data.count(b"\n") <= lines:
            step = min(block, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    return [line.decode(errors="replace") for line in data.splitlines()[-lines:]]
