"""A TCP proxy between the app and PostgreSQL that reads the frontend protocol and counts what the
client sends by message type. Every Sync ('S') and simple Query ('Q') makes the client wait for
the server's answer: each is one round trip (BEGIN and COMMIT included). It also counts the
transactions begun (a simple Query of BEGIN) and, from the server's side, the errors it sends by
SQLSTATE.

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
BEGIN = "BEGIN"
"""The key under which `CountingProxy.events` counts the transactions begun."""


def _messages(buffer: bytearray) -> list[bytes]:
    """The whole typed messages at the start of `buffer` (type, length, body), taken from it."""
    taken = []
    while len(buffer) >= 5:
        (length,) = struct.unpack("!i", buffer[1:5])
        if len(buffer) < 1 + length:
            break
        taken.append(bytes(buffer[: 1 + length]))
        del buffer[: 1 + length]
    return taken


class BackendCounter:
    """Parses the server's byte stream as it passes, counting its errors by SQLSTATE."""

    def __init__(self) -> None:
        self.errors: Counter[str] = Counter()
        self.buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self.buffer += data
        for message in _messages(self.buffer):
            if message[:1] != b"E":
                continue
            # Fields: a code byte, a NUL-terminated string; 'C' is the SQLSTATE.
            for field in message[5:].split(b"\0"):
                if field[:1] == b"C":
                    self.errors[field[1:].decode()] += 1


class FrontendCounter:
    """Parses one client's byte stream as it passes, counting messages by type."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.begins = 0
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
            for typed in _messages(self.buffer):
                self.counts[chr(typed[0])] += 1
                if typed[:1] == b"Q" and typed[5:].lstrip().upper().startswith(b"BEGIN"):
                    self.begins += 1
                forward += typed
            break
        return bytes(forward), bytes(answer)


class CountingProxy:
    """Listens on 127.0.0.1 (a port of its own) and forwards to `upstream`, counting."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.counts: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        """Transactions begun (BEGIN) and the server's errors, by SQLSTATE."""
        self.port = 0
        self._lock = threading.Lock()

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)

    def events_snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.events)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser, backend = FrontendCounter(), BackendCounter()
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
                    self.events[BEGIN] += parser.begins
                parser.counts.clear()
                parser.begins = 0
            up_writer.close()

        async def server_to_client() -> None:
            while data := await up_reader.read(65536):
                backend.feed(data)
                if backend.errors:
                    with self._lock:
                        self.events.update(backend.errors)
                    backend.errors.clear()
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
