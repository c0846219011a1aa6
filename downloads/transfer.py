"""Moving the bytes of one file: HTTP Range requests into a partial file, resumable, verified.

The shape follows Ollama's `server/download.go`: a large file is split into parts, each
part knows how many of its bytes are on disk, and a stalled or failing part is retried on
its own. Parts are taken in file order by a few connections at once, so the written prefix
grows steadily and a hasher follows it: the digest is ready moments after the last byte.

Progress survives a kill: every few MiB the parts' offsets go to a checkpoint file beside
the partial file (the database gets them too, twice a second, from the caller's `tick`).

The bytes move through `http.client` into one reused buffer per connection, read in pieces
that grow to 1 MiB while the data comes fast: at loopback speeds httpx's 64 KiB reads and
fresh buffers cost more CPU than the transfer itself (see docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import http.client
import json
import logging
import os
import queue
import socket
import ssl
import threading
import time
import urllib.request
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from core.digests import READ_BYTES, file_digest, new_digest  # READ_BYTES: what the hasher reads at once

logger = logging.getLogger(__name__)

# A read asks for at most what arrived in about READ_SECONDS at the current speed (between these
# bounds), so a slow link still shows progress and a fast one is read in few large pieces.
MIN_READ_BYTES, MAX_READ_BYTES, READ_SECONDS = 64 * 1024, 1024 * 1024, 0.1
MAX_REDIRECTS = 5
PART_BYTES = 16 * 1024 * 1024  # the largest part of a split file
# Every WIDEN_SECONDS, WIDEN_STEP more connections while the last ones raised the total throughput by WIDEN_GAIN
# (see _Widening): soon enough to matter for a 1 GiB file, which a capped link carries in a few seconds.
WIDEN_SECONDS, WIDEN_GAIN, WIDEN_STEP = 0.5, 1.1, 4
CHECKPOINT_EVERY_BYTES = 2 * 1024 * 1024
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a full disk or quota: no retry helps until someone frees space


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
    part_count: int = 8  # connections to start with: CDNs cap each one
    max_part_count: int = 16  # opened WIDEN_STEP at a time while the total throughput still grows
    part_threshold: int = 64 * 1024 * 1024  # files above this are split
    stall_seconds: float = 30.0
    max_attempts: int = 5
    backoff_seconds: float = 1.0
    # Each connection's socket receive buffer (0: the kernel's autotuning, which sizes it to the link). What
    # sits there when the worker dies is lost and fetched again.
    receive_buffer_bytes: int = 0


def split_into_parts(size: int, connections: int, threshold: int) -> list[list[int]]:
    """`[[start, end_inclusive, done], …]` in file order: one part for a small file, else parts of
    at most PART_BYTES (and at least `connections` of them)."""
    if size <= 0:
        return [[0, -1, 0]]
    step = size if size <= threshold else min(PART_BYTES, -(-size // connections))
    return [[start, min(start + step, size) - 1, 0] for start in range(0, size, step)]


def same_layout(parts: list[list[int]], others: list[list[int]]) -> bool:
    """Whether two part lists cut the file at the same places (their progress aside)."""
    return [part[:2] for part in parts] == [part[:2] for part in others]


PARTIAL_SUFFIX = ".llmpart"


def partial_path(destination: Path) -> Path:
    """Where a file is written until it is verified and renamed into place."""
    return destination.with_name(destination.name + PARTIAL_SUFFIX)


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
        # Where `url` redirected to (a signed storage URL): every range after the first goes there at once, so a
        # file costs one request to the hub (its redirects are round trips and count against its rate limits).
        self._resolved: str | None = None
        self._resolving = threading.Lock()
        self.algorithm = algorithm
        self.stop = threading.Event()
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._unsaved = 0
        self._received = 0  # bytes written since take_received() was last called
        self._written = 0  # bytes written in all, for the widening
        self._worker_limit = settings.part_count  # workers beyond it leave after their current part
        self._working = 0
        self._connections: set[http.client.HTTPConnection] = set()  # of all workers, to cut on a stop

    def run(self, tick: Callable[[], None], tick_seconds: float = 0.5) -> str:
        """Fetch every unfinished part; call `tick` about every `tick_seconds`. Returns the file's digest."""
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.partial, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size != self.size:
                with self._no_space_is_fatal():
                    os.ftruncate(fd, self.size)
            todo: queue.Queue = queue.Queue()
            for part in self.parts:
                if part[2] < part[1] - part[0] + 1:
                    todo.put(part)
            workers = [threading.Thread(target=self._work, args=(fd, todo), daemon=True)
                       for _ in range(min(self.settings.part_count, todo.qsize()))]
            hashed: list[str] = []
            hasher = threading.Thread(target=self._hash, args=(fd, hashed), daemon=True)
            threads = [*workers, hasher]
            widening = _Widening(self.settings.max_part_count)
            self._worker_limit = len(workers)
            try:
                for thread in threads:
                    thread.start()
                while alive := [thread for thread in threads if thread.is_alive()]:
                    alive[0].join(tick_seconds)
                    tick()
                    if todo.qsize():
                        self._worker_limit = widening.target(len(workers), self._written)
                    while len(workers) < self._worker_limit:
                        workers.append(threading.Thread(target=self._work, args=(fd, todo), daemon=True))
                        threads.append(workers[-1])
                        workers[-1].start()
                    if self._errors:
                        self.stop.set()
                    if self.stop.is_set():
                        break
            finally:
                # Whatever ended the loop (a stop, an error, `tick` raising), no thread may outlive the file
                # descriptor: its number could be handed to another file.
                if any(thread.is_alive() for thread in threads):
                    self.stop.set()
                    self._cut_connections()  # unblocks reads waiting on a silent server
                    for thread in threads:
                        if thread.ident is not None:
                            thread.join()
                self._checkpoint(fd)
            tick()
        finally:
            os.close(fd)
        if self._errors:
            raise self._errors[0]
        if self.stop.is_set() or not hashed:
            raise TransferStopped()
        return hashed[0]

    # --- workers ---
    def _work(self, fd: int, todo: queue.Queue) -> None:
        connections = _Connections(self.settings, self._connections, self._lock)
        buffer = memoryview(bytearray(MAX_READ_BYTES))
        with self._lock:
            self._working += 1
        counted = True
        try:
            while not self.stop.is_set():
                with self._lock:
                    # One too many (the last connections opened did not raise the throughput): it leaves, with
                    # the bytes in flight on its connection that a crash would lose.
                    if self._working > self._worker_limit:
                        self._working -= 1
                        counted = False
                        return
                try:
                    part = todo.get_nowait()
                except queue.Empty:
                    return
                self._run_part(fd, part, connections, buffer)
        except BaseException as exc:  # reported to run(), which stops the others
            self._errors.append(exc)
        finally:
            if counted:
                with self._lock:
                    self._working -= 1
            connections.close()

    def _run_part(self, fd: int, part: list[int], connections: _Connections, buffer: memoryview) -> None:
        attempt = 0
        while part[2] < part[1] - part[0] + 1 and not self.stop.is_set():
            before = part[2]
            try:
                self._fetch_range(fd, part, connections, buffer)
            except (http.client.HTTPException, _Retryable, OSError) as exc:
                connections.close()
                if self.stop.is_set():
                    return
                attempt = 0 if part[2] > before else attempt + 1
                if attempt >= self.settings.max_attempts:
                    raise TransferFailed("SOURCE_UNAVAILABLE", f"{self.url}: gave up after {attempt} attempts: {exc}")
                logger.warning("part at %s of %s: %s; retrying", part[0], self.url, exc)
                self.stop.wait(self.settings.backoff_seconds * 2 ** (attempt - 1))

    def _fetch_range(self, fd: int, part: list[int], connections: _Connections, buffer: memoryview) -> None:
        start, end = part[0] + part[2], part[1]
        response = self._open(connections, {"Range": f"bytes={start}-{end}", **REQUEST_HEADERS})
        self._read_body(fd, part, response, buffer, skip=start if response.status == 200 else 0)
        if not response.isclosed():
            connections.close()  # bytes we do not want (a server that ignored the Range), or a stop

    def _open(self, connections: _Connections, headers: dict) -> http.client.HTTPResponse:
        """A range's response, its body unread: from the resolved storage URL once it is known; until then one
        worker at a time resolves it (the others wait, then reuse it)."""
        resolved = self._resolved
        if resolved is None:
            with self._resolving:
                if self._resolved is None:
                    response, self._resolved = self._follow(self.url, headers, connections)
                    return response
                resolved = self._resolved
        try:
            return self._follow(resolved, headers, connections)[0]
        except TransferFailed:
            # A signed storage URL expired or was withdrawn (403, 410…): resolve it again from the hub.
            self._resolved = None
            raise _Retryable(f"the storage URL was refused; resolving {self.url} again") from None

    def _follow(self, url: str, headers: dict, connections: _Connections) -> tuple[http.client.HTTPResponse, str]:
        """GET `url`, following redirects: the response (its status checked) and the URL that answered."""
        for _ in range(MAX_REDIRECTS + 1):
            if self.auth_header and _origin(url) == self.auth_origin:
                headers["Authorization"] = self.auth_header
            else:
                headers.pop("Authorization", None)  # never send the token to another host
            response = connections.get(url, headers)
            if response.status in (301, 302, 303, 307, 308):
                response.read()
                url = urljoin(url, response.getheader("Location", ""))
                continue
            _check_status(response)
            return response, url
        raise _Retryable(f"too many redirects from {self.url}")

    def _read_body(self, fd: int, part: list[int], response: http.client.HTTPResponse, buffer: memoryview,
                   skip: int) -> None:
        """Write the response's bytes at the part's offset as they arrive (a server that ignored the Range
        sends the file from its start: the first `skip` bytes are dropped)."""
        end, offset = part[1], part[0] + part[2]
        size = MIN_READ_BYTES
        while offset <= end:
            if self.stop.is_set():
                return
            started = time.monotonic()
            count = response.readinto(buffer[: min(size, skip or end + 1 - offset)])
            if not count:
                raise _Retryable(f"connection closed at byte {offset} of {end + 1}")
            # Ask for more while a read fills quickly, for less when it waits on the network.
            elapsed = time.monotonic() - started
            size = min(size * 2, MAX_READ_BYTES) if elapsed < READ_SECONDS / 2 else \
                max(size // 2, MIN_READ_BYTES) if elapsed > READ_SECONDS else size
            if skip:
                skip -= count
                continue
            self._write(fd, buffer[:count], offset)
            offset += count
            part[2] += count
            self._count(fd, count)

    def _write(self, fd: int, data: memoryview, offset: int) -> None:
        """All of `data` at `offset` (a write may be short when the disk fills up), or TransferFailed."""
        with self._no_space_is_fatal():
            while data:
                written = os.pwrite(fd, data, offset)
                data, offset = data[written:], offset + written

    @contextlib.contextmanager
    def _no_space_is_fatal(self):
        try:
            yield
        except OSError as exc:
            if exc.errno not in NO_SPACE:
                raise
            raise TransferFailed("INSUFFICIENT_STORAGE",
                                 f"{self.partial.parent}: no space left on the device ({exc.strerror}); the bytes "
                                 f"already written are kept: free some space, then resume") from exc

    def take_received(self) -> int:
        """The bytes received since the last call (for the metrics)."""
        with self._lock:
            received, self._received = self._received, 0
        return received

    def _count(self, fd: int, written: int) -> None:
        with self._lock:
            self._received += written
            self._written += written
            self._unsaved += written
            due = self._unsaved >= CHECKPOINT_EVERY_BYTES
            if due:
                self._unsaved = 0
        if due:
            self._checkpoint(fd)

    def _checkpoint(self, fd: int) -> None:
        """Write the parts' offsets (only bytes already written) beside the partial file, atomically.
        Offsets only grow, so a snapshot replaced by an older one from another thread is still true.
        Nothing is written once the partial file is gone (a cancel removed it)."""
        if not os.fstat(fd).st_nlink:
            return
        path = checkpoint_path(self.partial)
        with self._lock:
            snapshot = json.dumps([list(part) for part in self.parts])
        temporary = path.with_name(f"{path.name}.{threading.get_ident()}")
        try:
            temporary.write_text(snapshot)
        except OSError as exc:
            # The older checkpoint stays, still true (offsets only grow); the database has the newer offsets.
            temporary.unlink(missing_ok=True)
            if exc.errno not in NO_SPACE:
                raise
            return
        os.replace(temporary, path)

    def _cut_connections(self) -> None:
        with self._lock:
            for connection in self._connections:
                if connection.sock is not None:
                    try:
                        socket.socket.shutdown(connection.sock, socket.SHUT_RDWR)
                    except OSError:
                        pass

    # --- the hasher, following the written prefix ---
    def _hash(self, fd: int, result: list[str]) -> None:
        digest = new_digest(self.algorithm, self.size)
        hashed = 0
        buffer = memoryview(bytearray(READ_BYTES))
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
                    count = os.preadv(fd, [buffer[: min(READ_BYTES, prefix - hashed)]], hashed)
                    if not count:
                        raise OSError(f"{self.partial} is shorter than expected")
                    digest.update(buffer[:count])
                    hashed += count
            if hashed >= self.size:
                result.append(digest.hexdigest())
        except BaseException as exc:
            self._errors.append(exc)


class _Widening:
    """How many connections a file should have: a link whose connections are each capped (a CDN edge, a long
    round trip) carries more with more of them, up to its own cap; a link bound by this machine's CPU does not.
    The first WIDEN_SECONDS (connections opening) are not measured; then WIDEN_STEP more after each such span
    whose throughput was WIDEN_GAIN × the one before; once a step did not raise it, back to the count before
    that step, for good."""

    def __init__(self, most: int):
        self.most = most
        self.since, self.written = time.monotonic(), 0
        self.rate: float | None = None  # of the last span measured
        self.before_step = 0  # the count before the last step
        self.warming, self.settled = True, 0  # settled: the final count, once known

    def target(self, count: int, written: int) -> int:
        now = time.monotonic()
        if self.settled or now - self.since < WIDEN_SECONDS:
            return self.settled or count
        rate = (written - self.written) / (now - self.since)
        self.since, self.written = now, written
        if self.warming:
            self.warming = False
            return count
        previous, self.rate = self.rate, rate
        if previous is not None and rate < previous * WIDEN_GAIN:
            self.settled = self.before_step
        elif count >= self.most:
            self.settled = count
        else:
            self.before_step = count
            return min(count + WIDEN_STEP, self.most)
        return self.settled


def _check_status(response: http.client.HTTPResponse) -> None:
    status = response.status
    if status in (200, 206):
        return
    error_code = response.getheader("X-Error-Code", "")
    if status in (401, 403) or error_code == "GatedRepo":
        raise TransferFailed("GATED_MODEL", f"access refused ({status} {error_code}): a token with access is needed")
    if status == 404:
        raise TransferFailed("MODEL_NOT_FOUND", f"the file is not at the source ({error_code or status})")
    if status == 416:
        raise TransferFailed("SOURCE_UNAVAILABLE", "the source refused the byte range")
    raise _Retryable(f"HTTP {status}")


REQUEST_HEADERS = {"Accept-Encoding": "identity", "User-Agent": "llm-manager"}


class _Connections:
    """One worker's keep-alive connections, one per origin, through the proxy the environment names
    (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY, as httpx and huggingface_hub read them); TLS is checked
    against the CA bundle httpx uses (certifi, or SSL_CERT_FILE / SSL_CERT_DIR)."""

    def __init__(self, settings: TransferSettings, registry: set, lock: threading.Lock):
        self.timeout, self.receive_buffer = settings.stall_seconds, settings.receive_buffer_bytes
        self.registry, self.lock = registry, lock
        # origin → (connection, whether requests name the whole URL (a plain-HTTP proxy), headers for the proxy)
        self.open: dict[str, tuple[http.client.HTTPConnection, bool, dict]] = {}

    def get(self, url: str, headers: dict) -> http.client.HTTPResponse:
        """Send a GET for `url` and return the response, its body not yet read."""
        parts = urlsplit(url)
        origin = _origin(url)
        if origin not in self.open:
            connection, _, _ = self.open[origin] = self._connect(parts)
            if self.receive_buffer:
                connection._create_connection = self._open_socket
            with self.lock:
                self.registry.add(connection)
        connection, whole_url, proxy_headers = self.open[origin]
        target = url if whole_url else (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # A kept-alive connection the server closed while it was idle fails at once: a GET is sent again.
        for may_retry in (connection.sock is not None, False):
            try:
                connection.request("GET", target, headers={**headers, **proxy_headers})
                return connection.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not may_retry:
                    raise
                connection.close()

    def _connect(self, parts) -> tuple[http.client.HTTPConnection, bool, dict]:
        host, port, https = parts.hostname or "", parts.port, parts.scheme == "https"
        proxies = urllib.request.getproxies()
        proxy = proxies.get(parts.scheme) or proxies.get("all")
        if not proxy or urllib.request.proxy_bypass(host):
            if https:
                return http.client.HTTPSConnection(host, port, timeout=self.timeout,
                                                   context=_tls_context()), False, {}
            return http.client.HTTPConnection(host, port, timeout=self.timeout), False, {}
        via = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        auth = {}
        if via.username:
            credentials = f"{unquote(via.username)}:{unquote(via.password or '')}".encode()
            auth = {"Proxy-Authorization": f"Basic {b64encode(credentials).decode()}"}
        if https:  # a CONNECT tunnel through the proxy, TLS inside it
            connection = http.client.HTTPSConnection(via.hostname, via.port or 8080, timeout=self.timeout,
                                                     context=_tls_context())
            connection.set_tunnel(host, port or 443, headers=auth)
            return connection, False, {}
        return http.client.HTTPConnection(via.hostname, via.port or 8080, timeout=self.timeout), True, auth

    def _open_socket(self, address: tuple[str, int], timeout: float, source_address=None) -> socket.socket:
        """socket.create_connection, with the receive buffer set before the handshake fixes the window scale."""
        error: OSError | None = None
        for family, kind, protocol, _, sockaddr in socket.getaddrinfo(*address, type=socket.SOCK_STREAM):
            sock = socket.socket(family, kind, protocol)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
                sock.settimeout(timeout)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                error = exc
        raise error or OSError(f"cannot resolve {address[0]}")

    def close(self) -> None:
        with self.lock:
            for connection, _, _ in self.open.values():
                self.registry.discard(connection)
                connection.close()
        self.open.clear()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One context for every connection (loading the CA bundle takes milliseconds); contexts are thread-safe."""
    return httpx.create_ssl_context()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def verified(path: Path, expected: str, algorithm: str, size: int) -> bool:
    """Whether the file at `path` has the `expected` digest (without one: the size)."""
    if expected:
        return file_digest(path, algorithm) == expected
    return path.stat().st_size == size


def fetch_into_place(*, url: str, size: int, destination: Path, expected: str, algorithm: str,
                     settings: TransferSettings, auth: str | None, parts: list[list[int]],
                     tick: Callable[[FileTransfer, bool], None], started_over: Callable[[], None]) -> None:
    """Fetch `url` into `destination`: its ranges into the partial file beside it (resuming from `parts`, or from
    what the checkpoint there knows), hashed as they land, renamed into place once the digest matches `expected`
    (none: any). Bytes that do not match are fetched once more from scratch (`started_over` is told first), then
    TransferFailed(CHECKSUM_MISMATCH). `tick(transfer, last)` is called while it runs and once at the end."""
    partial = partial_path(destination)
    for _ in range(2):
        fresh = split_into_parts(size, settings.part_count, settings.part_threshold)
        if not parts or not partial.exists() or not same_layout(parts, fresh):
            parts = fresh
        # The checkpoint beside the partial file may know of bytes written after the caller last saved `parts`.
        parts = load_checkpoint(partial, parts)
        transfer = FileTransfer(url, size, partial, parts, settings, auth, algorithm)
        try:
            digest = transfer.run(lambda: tick(transfer, False))
        finally:
            tick(transfer, True)  # what is on disk is recorded, whatever happened
        if not expected or digest == expected:
            partial.replace(destination)
            checkpoint_path(partial).unlink(missing_ok=True)
            return
        partial.unlink(missing_ok=True)
        checkpoint_path(partial).unlink(missing_ok=True)
        parts = []
        started_over()
    raise TransferFailed("CHECKSUM_MISMATCH", f"{destination.name}: the bytes received twice do not match their hash")
