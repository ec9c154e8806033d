"""A TCP proxy on loopback whose connections the tests can cut, as a database outage would, or
hold, as a server that has stopped answering would; it counts the connections it refused and the
requests it held, so a test can wait until the other side has tried."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to an upstream; `cut()` drops every connection and refuses
    new ones until `restore()`."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.down = False
        self.refused = 0
        """Connections closed at once because the proxy was down."""
        self.held = 0
        """Reads kept back because the proxy was holding them."""
        self._holding: str | None = None
        """What is held: "requests" (client to server) or "answers" (server to client)."""
        self._let_go: asyncio.Event | None = None
        self._refusal = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, carries: str
    ) -> None:
        try:
            while data := await reader.read(65536):
                if self._holding == carries:
                    with self._refusal:
                        self.held += 1
                        self._refusal.notify_all()
                    assert self._let_go is not None
                    await self._let_go.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.close()
            with self._refusal:
                self.refused += 1
                self._refusal.notify_all()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer, carries="requests"),
            self._pipe(up_reader, writer, carries="answers"),
        )
        self._writers -= {writer, up_writer}

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def cut(self) -> None:
        self.down = True
        self.drop()

    def restore(self) -> None:
        self.down = False

    def drop(self) -> None:
        """Drop every connection, as a network that fails would; new ones are let through."""

        async def drop() -> None:
            for writer in list(self._writers):
                writer.transport.abort()

        self._call(drop())

    @contextmanager
    def holding(self, what: str = "requests") -> Iterator[None]:
        """While the body runs, what clients send ("requests") or what the server answers
        ("answers") is kept back; afterwards it goes on."""

        async def hold() -> None:
            self._let_go = asyncio.Event()
            self._holding = what

        async def let_go() -> None:
            self._holding = None
            assert self._let_go is not None
            self._let_go.set()

        self._call(hold())
        try:
            yield
        finally:
            self._call(let_go())

    def wait_held(self, count: int = 1, timeout: float = 60) -> None:
        """Until `count` reads in all were held, or fail after `timeout` seconds."""
        with self._refusal:
            if not self._refusal.wait_for(lambda: self.held >= count, timeout):
                raise AssertionError(f"{self.held} of {count} reads held")

    def wait_refused(self, count: int = 1, timeout: float = 60) -> None:
        """Until `count` connections in all were refused while down (the client tried and
        failed), or fail after `timeout` seconds."""
        with self._refusal:
            if not self._refusal.wait_for(lambda: self.refused >= count, timeout):
                raise AssertionError(f"{self.refused} of {count} connection attempts refused")

    @contextmanager
    def running(self) -> Iterator[CuttableProxy]:
        self._thread.start()
        self._call(self._start())
        try:
            yield self
        finally:
            self.cut()

            async def stop() -> None:
                assert self._server is not None
                self._server.close()
                await self._server.wait_closed()

            self._call(stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
