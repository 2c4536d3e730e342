"""Test helpers shared by the stream and data-pump tests: a loopback TCP pair, a slow file."""

from __future__ import annotations

import io
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


@asynccontextmanager
async def tcp_pair() -> AsyncIterator[tuple[trio.SocketStream, trio.SocketStream]]:
    """A connected pair of TCP streams on 127.0.0.1 (client, server), closed on exit."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    try:
        port = listener.socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", port)
        server = await listener.accept()
    finally:
        await listener.aclose()
    async with client, server:
        yield client, server


class SlowFile(io.BytesIO):
    """Each write waits until the test lets it go (``go``; in the worker thread) and says it
    started (``started``)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.go = threading.Event()

    def write(self, data: object) -> int:
        self.started.set()
        self.go.wait(5)
        return super().write(data)  # type: ignore[arg-type]
