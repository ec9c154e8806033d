"""A TCP proxy between the app and PostgreSQL that reads the frontend protocol and counts what the
client sends by message type. Every Sync ('S') and simple Query ('Q') makes the client wait for
the server's answer: each is one round trip (BEGIN and COMMIT included).

SSL is refused at the proxy (it answers the client's SSLRequest with 'N' itself), so the rest
of the conversation is plain and readable."""

from __future__ import annotations

import asyncio
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
ROUND_TRIPS = ("S", "Q")


class FrontendCounter:
    """Parses one client's byte stream as it passes, counting messages by type."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.buffer = bytearray()
        self.started = False

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """Takes what the client sent; returns the whole messages to pass on to the server and
        what the proxy answers the client itself (its refusal of SSL)."""
        self.buffer += data
        forward, answer = bytearray(), bytearray()
        while True:
            if not self.started:
                if len(self.buffer) < 8:
                    break
                length, code = struct.unpack("!ii", self.buffer[:8])
                if len(self.buffer) < length:
                    break
                message = self.buffer[:length]
                del self.buffer[:length]
                if code in (SSL_REQUEST, GSSENC_REQUEST):
                    answer += b"N"
                else:
                    forward += message
                    self.started = True  # the StartupMessage: typed messages from here on
                continue
            if len(self.buffer) < 5:
                break
            (length,) = struct.unpack("!i", self.buffer[1:5])
            if len(self.buffer) < 1 + length:
                break
            self.counts[chr(self.buffer[0])] += 1
            forward += self.buffer[: 1 + length]
            del self.buffer[: 1 + length]
        return bytes(forward), bytes(answer)


class CountingProxy:
    """Listens on 127.0.0.1 (a port of its own) and forwards to `upstream`, counting."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.counts: Counter[str] = Counter()
        self.port = 0
        self._lock = threading.Lock()

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = FrontendCounter()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return

        async def client_to_server() -> None:
            while data := await reader.read(65536):
                forward, answer = parser.feed(data)
                if answer:
                    writer.write(answer)
                    await writer.drain()
                if forward:
                    up_writer.write(forward)
                    await up_writer.drain()
                with self._lock:
                    self.counts.update(parser.counts)
                parser.counts.clear()
            up_writer.close()

        async def server_to_client() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        try:
            await asyncio.gather(client_to_server(), server_to_client())
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            up_writer.close()

    async def _serve(self, ready: threading.Event, stop: asyncio.Event) -> None:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        async with server:
            await stop.wait()


@contextmanager
def counting_proxy(upstream: tuple[str, int]) -> Iterator[CountingProxy]:
    """The proxy on a thread of its own for the length of the block."""
    proxy = CountingProxy(upstream)
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(proxy._serve(ready, stop))

    thread = threading.Thread(target=run, name="pgwire", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the counting proxy did not start")
    try:
        yield proxy
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
