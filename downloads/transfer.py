"""Moving the bytes of one file: HTTP Range requests into a partial file, resumable, verified.

The shape follows Ollama's `server/download.go`: a large file is split into parts, each
part knows how many of its bytes are on disk, and a stalled or failing part is retried on
its own. Parts are taken in file order by a few connections at once, so the written prefix
grows steadily and a hasher follows it: the digest is ready moments after the last byte.

Progress survives a kill: every few MiB the parts' offsets go to a checkpoint file beside
the partial file (the database gets them too, twice a second, from the caller's `tick`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urljoin, urlsplit

import httpx

logger = logging.getLogger(__name__)

READ_BYTES = 8 * 1024 * 1024
MAX_REDIRECTS = 5
PART_BYTES = 16 * 1024 * 1024  # the largest part of a split file
CHECKPOINT_EVERY_BYTES = 2 * 1024 * 1024


class TransferStopped(Exception):
    """The transfer was asked to stop (pause, cancel, or another job took over)."""


class TransferFailed(Exception):
    """The file cannot be fetched; `code` is the contract error code to report."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class _Retryable(Exception):
    pass


@dataclass
class TransferSettings:
    part_count: int = 4  # connections at once
    part_threshold: int = 64 * 1024 * 1024  # files above this are split
    stall_seconds: float = 30.0
    max_attempts: int = 5
    backoff_seconds: float = 1.0


def split_into_parts(size: int, connections: int, threshold: int) -> list[list[int]]:
    """`[[start, end_inclusive, done], …]` in file order: one part for a small file, else parts of
    at most PART_BYTES (and at least `connections` of them)."""
    if size <= 0:
        return [[0, -1, 0]]
    step = size if size <= threshold else min(PART_BYTES, -(-size // connections))
    return [[start, min(start + step, size) - 1, 0] for start in range(0, size, step)]


def _new_digest(algorithm: str, size: int):
    if algorithm == "sha256":
        return hashlib.sha256()
    digest = hashlib.sha1()  # the git blob id the Hub uses as ETag of small files
    digest.update(b"blob %d\0" % size)
    return digest


def file_digest(path: Path, algorithm: str) -> str:
    """sha256 of the file's bytes, or (`git`) its git blob sha1."""
    digest = _new_digest(algorithm, path.stat().st_size)
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def same_layout(parts: list[list[int]], others: list[list[int]]) -> bool:
    """Whether two part lists cut the file at the same places (their progress aside)."""
    return [part[:2] for part in parts] == [part[:2] for part in others]


def checkpoint_path(partial: Path) -> Path:
    return partial.with_name(partial.name + ".json")


def load_checkpoint(partial: Path, parts: list[list[int]]) -> list[list[int]]:
    """The parts with the offsets of the checkpoint where it knows more than `parts`."""
    try:
        saved = json.loads(checkpoint_path(partial).read_text())
    except (OSError, ValueError):
        return parts
    if not partial.exists() or not same_layout(saved, parts):
        return parts
    return [[start, end, max(done, saved_part[2])] for (start, end, done), saved_part in zip(parts, saved)]


class FileTransfer:
    """Fetch `url` (of `size` bytes) into `partial` through the parts still unfinished, hashing as it goes."""

    def __init__(self, url: str, size: int, partial: Path, parts: list[list[int]], settings: TransferSettings,
                 auth_header: str | None = None, algorithm: str = "sha256"):
        self.url = url
        self.size = size
        self.partial = partial
        self.parts = parts
        self.settings = settings
        self.auth_header = auth_header
        self.auth_origin = _origin(url)
        self.algorithm = algorithm
        self.stop = threading.Event()
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._unsaved = 0
        self._client = httpx.Client(
            timeout=httpx.Timeout(settings.stall_seconds, connect=10.0),
            limits=httpx.Limits(max_connections=settings.part_count + 2),
            headers={"Accept-Encoding": "identity", "User-Agent": "llm-manager"},
        )

    def run(self, tick: Callable[[], None], tick_seconds: float = 0.5) -> str:
        """Fetch every unfinished part; call `tick` about every `tick_seconds`. Returns the file's digest."""
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.partial, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size != self.size:
                os.ftruncate(fd, self.size)
            todo: queue.Queue = queue.Queue()
            for part in self.parts:
                if part[2] < part[1] - part[0] + 1:
                    todo.put(part)
            workers = [threading.Thread(target=self._work, args=(fd, todo), daemon=True)
                       for _ in range(min(self.settings.part_count, todo.qsize()))]
            hashed: list[str] = []
            hasher = threading.Thread(target=self._hash, args=(fd, hashed), daemon=True)
            for thread in [*workers, hasher]:
                thread.start()
            while alive := [thread for thread in [*workers, hasher] if thread.is_alive()]:
                alive[0].join(tick_seconds)
                tick()
                if self._errors:
                    self.stop.set()
                if self.stop.is_set():
                    self._client.close()  # unblocks reads waiting on a silent server
                    for thread in alive:
                        thread.join()
            self._checkpoint()
            tick()
        finally:
            os.close(fd)
            self._client.close()
        if self._errors:
            raise self._errors[0]
        if self.stop.is_set() or not hashed:
            raise TransferStopped()
        return hashed[0]

    # --- workers ---
    def _work(self, fd: int, todo: queue.Queue) -> None:
        try:
            while not self.stop.is_set():
                try:
                    part = todo.get_nowait()
                except queue.Empty:
                    return
                self._run_part(fd, part)
        except BaseException as exc:  # reported to run(), which stops the others
            self._errors.append(exc)

    def _run_part(self, fd: int, part: list[int]) -> None:
        attempt = 0
        while part[2] < part[1] - part[0] + 1 and not self.stop.is_set():
            before = part[2]
            try:
                self._fetch_range(fd, part)
            except (httpx.HTTPError, _Retryable, OSError) as exc:
                if self.stop.is_set():
                    return
                attempt = 0 if part[2] > before else attempt + 1
                if attempt >= self.settings.max_attempts:
                    raise TransferFailed("SOURCE_UNAVAILABLE", f"{self.url}: gave up after {attempt} attempts: {exc}")
                logger.warning("part at %s of %s: %s; retrying", part[0], self.url, exc)
                self.stop.wait(self.settings.backoff_seconds * 2 ** (attempt - 1))

    def _fetch_range(self, fd: int, part: list[int]) -> None:
        start, end = part[0] + part[2], part[1]
        url, headers = self.url, {"Range": f"bytes={start}-{end}"}
        for _ in range(MAX_REDIRECTS + 1):
            if self.auth_header and _origin(url) == self.auth_origin:
                headers["Authorization"] = self.auth_header
            else:
                headers.pop("Authorization", None)  # never send the token to another host
            with self._client.stream("GET", url, headers=headers) as response:
                if response.is_redirect:
                    url = urljoin(url, response.headers["Location"])
                    continue
                _check_status(response)
                skip = start if response.status_code == 200 else 0  # no Range support: start over
                offset = start
                for chunk in response.iter_raw():  # as it arrives: nothing buffered to lose on a stop
                    if self.stop.is_set():
                        return
                    if skip:
                        dropped = min(skip, len(chunk))
                        chunk, skip = chunk[dropped:], skip - dropped
                    chunk = chunk[: end + 1 - offset]
                    if not chunk:
                        continue
                    os.pwrite(fd, chunk, offset)
                    offset += len(chunk)
                    part[2] += len(chunk)
                    self._count(len(chunk))
                    if offset > end:
                        return
                if offset <= end:
                    raise _Retryable(f"connection closed at byte {offset} of {end + 1}")
                return
        raise _Retryable(f"too many redirects from {self.url}")

    def _count(self, written: int) -> None:
        with self._lock:
            self._unsaved += written
            due = self._unsaved >= CHECKPOINT_EVERY_BYTES
            if due:
                self._unsaved = 0
        if due:
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Write the parts' offsets (only bytes already written) beside the partial file, atomically."""
        path = checkpoint_path(self.partial)
        with self._lock:
            snapshot = json.dumps([list(part) for part in self.parts])
            temporary = path.with_name(f"{path.name}.{threading.get_ident()}")
            temporary.write_text(snapshot)
            os.replace(temporary, path)

    # --- the hasher, following the written prefix ---
    def _hash(self, fd: int, result: list[str]) -> None:
        digest = _new_digest(self.algorithm, self.size)
        hashed = 0
        try:
            while hashed < self.size and not self.stop.is_set():
                prefix = 0
                for start, end, done in self.parts:
                    if done < end - start + 1:
                        prefix = start + done
                        break
                    prefix = end + 1
                if prefix <= hashed:
                    self.stop.wait(0.005)
                    continue
                while hashed < prefix:
                    chunk = os.pread(fd, min(READ_BYTES, prefix - hashed), hashed)
                    if not chunk:
                        raise OSError(f"{self.partial} is shorter than expected")
                    digest.update(chunk)
                    hashed += len(chunk)
            if hashed >= self.size:
                result.append(digest.hexdigest())
        except BaseException as exc:
            self._errors.append(exc)


def _check_status(response: httpx.Response) -> None:
    status = response.status_code
    if status in (200, 206):
        return
    error_code = response.headers.get("X-Error-Code", "")
    if status in (401, 403) or error_code == "GatedRepo":
        raise TransferFailed("GATED_MODEL", f"access refused ({status} {error_code}): a token with access is needed")
    if status == 404:
        raise TransferFailed("MODEL_NOT_FOUND", f"the file is not at the source ({error_code or status})")
    if status == 416:
        raise TransferFailed("SOURCE_UNAVAILABLE", "the source refused the byte range")
    raise _Retryable(f"HTTP {status}")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
