"""Reading a GGUF file's metadata (key/value header) without loading its arrays or tensors.

The `gguf` package's reader parses every array (a 32k-token vocabulary takes seconds);
the metadata a deployment needs is a handful of scalars, read here in milliseconds.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO, Collection

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
MAX_STRING_BYTES = 64 * 1024 * 1024  # longer than any chat template: a corrupt header, not a string


class GGUFError(ValueError):
    """Not a GGUF file, or one we cannot read."""


def _read(handle: BinaryIO, fmt: str):
    size = struct.calcsize(fmt)
    data = handle.read(size)
    if len(data) != size:
        raise GGUFError("truncated GGUF header")
    return struct.unpack(fmt, data)[0]


def _string(handle: BinaryIO) -> str:
    length = _read(handle, "<Q")
    if length > MAX_STRING_BYTES:
        raise GGUFError(f"a string of {length} bytes in the header: the file is corrupt")
    data = handle.read(length)
    if len(data) != length:
        raise GGUFError("truncated GGUF header")
    return data.decode("utf-8", errors="replace")


def _skip(handle: BinaryIO, value_type: int, count: int = 1) -> None:
    if value_type == _STRING:
        for _ in range(count):
            handle.seek(_read(handle, "<Q"), 1)
    elif value_type in _SCALARS:
        handle.seek(struct.calcsize(_SCALARS[value_type]) * count, 1)
    else:
        raise GGUFError(f"unknown GGUF value type {value_type}")


def _pick_strings(handle: BinaryIO, count: int, wanted: set[int]) -> dict[int, str]:
    picked = {}
    for index in range(count):
        if index in wanted:
            picked[index] = _string(handle)
        else:
            handle.seek(_read(handle, "<Q"), 1)
    return picked


def read_metadata(path: Path, token_ids: Collection[int] = ()) -> dict:
    """Scalar and string values by key; arrays are skipped (their keys map to None), but for the texts of the
    vocabulary's `token_ids`, kept as {id: text} under `tokenizer.ggml.tokens`. GGUFError for anything that is
    not a well-formed header."""
    try:
        return _read_metadata(path, token_ids)
    except OverflowError as exc:  # a corrupt length or count that no seek can take
        raise GGUFError(f"{path}: corrupt GGUF header ({exc})") from None


def _read_metadata(path: Path, token_ids: Collection[int]) -> dict:
    metadata: dict = {}
    with open(path, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise GGUFError(f"{path} is not a GGUF file")
        version = _read(handle, "<I")
        if version < 2:
            raise GGUFError(f"GGUF version {version} is not supported")
        _read(handle, "<Q")  # tensor count
        for _ in range(_read(handle, "<Q")):
            key = _string(handle)
            value_type = _read(handle, "<I")
            if value_type == _STRING:
                metadata[key] = _string(handle)
            elif value_type == _ARRAY:
                item_type, count = _read(handle, "<I"), _read(handle, "<Q")
                if key == "tokenizer.ggml.tokens" and token_ids and item_type == _STRING:
                    metadata[key] = _pick_strings(handle, count, set(token_ids))
                else:
                    _skip(handle, item_type, count)
                    metadata[key] = None
            else:
                if value_type not in _SCALARS:
                    raise GGUFError(f"unknown GGUF value type {value_type}")
                metadata[key] = _read(handle, _SCALARS[value_type])
    return metadata
