"""Moving the bytes of one file: HTTP Range requests into a partial file, in parallel parts,
resumable from persisted per-part offsets, retried with backoff, stopped on request, verified.

The shape follows Ollama's `server/download.go`: a file is split into parts, each part
knows how many of its bytes are on disk, and a stalled or failing part is retried on its
own. The caller owns persistence: it reads `parts` (and the byte counter) from `tick`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urljoin, urlsplit

import httpx

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
MAX_REDIRECTS = 5


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
    part_count: int = 4
    part_threshold: int = 64 * 1024 * 1024
    stall_seconds: float = 30.0
    max_attempts: int = 5
    backoff_seconds: float = 1.0


def split_into_parts(size: int, part_count: int, threshold: int) -> list[list[int]]:
    """`[[start, end_inclusive, done], …]`: one part for small files, `part_count` for large ones."""
    if size <= 0:
        return [[0, -1, 0]]
    count = part_count if size > threshold else 1
    step = -(-size // count)
    return [[start, min(start + step, size) - 1, 0] for start in range(0, size, step)]


def file_digest(path: Path, algorithm: str) -> str:
    """sha256 of the bytes, or (`git`) the git blob sha1 that the Hub uses as ETag of small files."""
    digest = hashlib.sha256() if algorithm == "sha256" else hashlib.sha1()
    if algorithm == "git":
        digest.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


class FileTransfer:
    """Fetch `url` (of `size` bytes) into `partial` through the parts still unfinished."""

    def __init__(
        self,
        url: str,
        size: int,
        partial: Path,
        parts: list[list[int]],
        settings: TransferSettings,
        auth_header: str | None = None,
    ):
        self.url = url
        self.size = size
        self.partial = partial
        self.parts = parts
        self.settings = settings
        self.auth_header = auth_header
        self.auth_origin = _origin(url)
        self.stop = threading.Event()
        self.fetched_bytes = 0  # bytes received by this transfer (for the "nothing fetched twice" checks)
        self._lock = threading.Lock()
        self._errors: list[BaseException] = []
        self._client = httpx.Client(
            timeout=httpx.Timeout(settings.stall_seconds, connect=10.0),
            limits=httpx.Limits(max_connections=settings.part_count + 2),
            headers={"Accept-Encoding": "identity", "User-Agent": "llm-manager"},
        )

    def run(self, tick: Callable[[], None], tick_seconds: float = 0.5) -> None:
        """Fetch every unfinished part in its own thread; call `tick` about every `tick_seconds`."""
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.partial, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size != self.size:
                os.ftruncate(fd, self.size)
            threads = [
                threading.Thread(target=self._run_part, args=(fd, part), daemon=True, name=f"part-{part[0]}")
                for part in self.parts
                if part[2] < part[1] - part[0] + 1
            ]
            for thread in threads:
                thread.start()
            while alive := [thread for thread in threads if thread.is_alive()]:
                alive[0].join(tick_seconds)
                tick()
                if self._errors:
                    self.stop.set()
                if self.stop.is_set():
                    self._client.close()  # unblocks reads waiting on a silent server
            for thread in threads:
                thread.join()
            tick()
        finally:
            os.close(fd)
            self._client.close()
        if self._errors:
            raise self._errors[0]
        if self.stop.is_set():
            raise TransferStopped()

    # --- one part ---
    def _run_part(self, fd: int, part: list[int]) -> None:
        attempt = 0
        try:
            while part[2] < part[1] - part[0] + 1 and not self.stop.is_set():
                before = part[2]
                try:
                    self._fetch_range(fd, part)
                except (httpx.HTTPError, _Retryable, OSError) as exc:
                    if self.stop.is_set():
                        return
                    attempt = 0 if part[2] > before else attempt + 1
                    if attempt >= self.settings.max_attempts:
                        raise TransferFailed(
                            "SOURCE_UNAVAILABLE", f"{self.url}: gave up after {attempt} attempts: {exc}"
                        ) from exc
                    logger.warning("part %s of %s: %s; retrying", part[0], self.url, exc)
                    self.stop.wait(self.settings.backoff_seconds * 2 ** (attempt - 1))
        except BaseException as exc:  # reported to run(), which stops the other parts
            self._errors.append(exc)

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
                self._check_status(response)
                skip = start if response.status_code == 200 else 0  # no Range support: start over
                offset = part[0] + part[2]
                for chunk in response.iter_raw():  # as it arrives: nothing buffered to lose on a stop
                    if self.stop.is_set():
                        return
                    with self._lock:
                        self.fetched_bytes += len(chunk)
                    if skip:
                        dropped = min(skip, len(chunk))
                        chunk, skip = chunk[dropped:], skip - dropped
                    chunk = chunk[: end + 1 - offset]
                    if not chunk:
                        continue
                    os.pwrite(fd, chunk, offset)
                    offset += len(chunk)
                    part[2] += len(chunk)
                    if offset > end:
                        return
                if offset <= end:
                    raise _Retryable(f"connection closed at byte {offset} of {end + 1}")
                return
        raise _Retryable(f"too many redirects from {self.url}")

    @staticmethod
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
