"""A keep-alive HTTP/1.1 client for the engines LLM Manager runs, on asyncio streams and h11.

The proxy's hot path. httpcore's pool looks at every pooled connection (a poll() and a few
attribute lookups each) whenever a request starts or ends: at 16 concurrent clients that was
a fifth of the web server's CPU. Engines are plain-HTTP OpenAI servers on our own network, so
each has a stack of idle connections here; taking one and giving it back costs nothing.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import h11

READ_BYTES = 64 * 1024


class EngineUnavailable(Exception):
    """The engine could not be reached, stopped answering, or broke the HTTP protocol."""


class EngineRefused(EngineUnavailable):
    """Nothing accepts connections on the engine's port."""


class _StaleConnection(Exception):
    """A kept-alive connection the engine had closed before it read our request: safe to send again."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.protocol = h11.Connection(h11.CLIENT)
        self.bytes_in = 0  # of the current exchange

    def open(self) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


class EngineResponse:
    """An engine's status; read the body with `read()` or `chunks()`, then `close()`, which keeps
    the connection for the next request when the body was read to its end (else drops it: the engine sees
    the caller leave and stops generating)."""

    def __init__(self, pool: EnginePool, connection: _Connection, response: h11.Response):
        self.status: int = response.status_code
        self._pool, self._connection, self._complete = pool, connection, False

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives."""
        while not self._complete:
            event = await self._pool.next_event(self._connection)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                self._complete = True

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    def close(self) -> None:
        self._pool.release(self._connection, self._complete)


class EnginePool:
    """Connections to one engine at `host:port`: as many as requests in flight, at most `max_idle` kept."""

    def __init__(self, host: str, port: int, connect_timeout: float = 5.0, read_timeout: float = 600.0,
                 max_idle: int = 32):
        self.host, self.port = host, port
        self.connect_timeout, self.read_timeout, self.max_idle = connect_timeout, read_timeout, max_idle
        self._host_header = f"{host}:{port}".encode()
        self._idle: list[_Connection] = []

    async def post(self, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> EngineResponse:
        """Send a POST and wait for the status line. Raises EngineUnavailable (EngineRefused: no listener)."""
        request = [
            h11.Request(method=b"POST", target=path.encode(),
                        headers=[(b"Host", self._host_header), (b"Content-Length", b"%d" % len(body)), *headers]),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ]
        while self._idle:
            connection = self._idle.pop()
            if connection.open():
                try:
                    return await self._exchange(connection, request, reused=True)
                except _StaleConnection:
                    continue
            connection.close()
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=READ_BYTES)
        except ConnectionRefusedError as exc:
            raise EngineRefused(f"nothing listens on {self.host}:{self.port} ({exc.strerror})") from None
        except (OSError, TimeoutError) as exc:
            raise EngineUnavailable(f"cannot connect to {self.host}:{self.port}: {exc or 'timed out'}") from None
        return await self._exchange(_Connection(reader, writer), request, reused=False)

    async def _exchange(self, connection: _Connection, request: list, reused: bool) -> EngineResponse:
        connection.bytes_in = 0
        try:
            connection.writer.write(b"".join(connection.protocol.send(event) for event in request))
            await connection.writer.drain()
            while True:
                event = await self.next_event(connection)
                if isinstance(event, h11.Response):
                    return EngineResponse(self, connection, event)
                # 1xx answers are skipped; anything else before a response is a broken exchange.
                if not isinstance(event, h11.InformationalResponse):
                    raise EngineUnavailable(f"the engine answered {type(event).__name__} before a response")
        except (EngineUnavailable, OSError) as exc:
            connection.close()
            if reused and not connection.bytes_in:
                raise _StaleConnection() from None  # closed while idle, before a byte of an answer
            raise exc if isinstance(exc, EngineUnavailable) else EngineUnavailable(str(exc)) from None
        except BaseException:
            connection.close()
            raise

    async def next_event(self, connection: _Connection):
        """The connection's next HTTP event, reading as needed; no bytes for `read_timeout` is a failure."""
        protocol = connection.protocol
        try:
            while (event := protocol.next_event()) is h11.NEED_DATA:
                async with asyncio.timeout(self.read_timeout):
                    data = await connection.reader.read(READ_BYTES)
                connection.bytes_in += len(data)
                protocol.receive_data(data)  # b"" at the end of the stream
        except h11.RemoteProtocolError as exc:
            raise EngineUnavailable(f"the engine broke off the answer: {exc}") from None
        except TimeoutError:
            raise EngineUnavailable(f"the engine sent nothing for {self.read_timeout:g} s") from None
        except OSError as exc:
            raise EngineUnavailable(f"the connection to the engine failed: {exc}") from None
        return event

    def release(self, connection: _Connection, complete: bool) -> None:
        protocol = connection.protocol
        if complete and protocol.our_state is h11.DONE and protocol.their_state is h11.DONE \
                and len(self._idle) < self.max_idle and connection.open():
            protocol.start_next_cycle()
            self._idle.append(connection)
        else:
            connection.close()
