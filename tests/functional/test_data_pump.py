"""The data pump keeps file I/O off the event loop: the sender's reads and the receiver's
writes run in worker threads (the event loop only moves bytes between the transport and
them), and everything received is still kept when the transfer breaks."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any, BinaryIO

import pytest

import jet_trio._transfer.driver as transfer_service
from jet_trio._xmpp.ns import JET_STUB

from .conftest import Net, make_file, run_transfer

SIZE = 3_000_000  # several read-ahead and write batches


class _Recording:
    """A file that records which threads read or write it."""

    def __init__(self, f: BinaryIO, threads: list[threading.Thread]) -> None:
        self._f = f
        self._threads = threads

    def read(self, n: int = -1) -> bytes:
        self._threads.append(threading.current_thread())
        return self._f.read(n)

    def write(self, data: Any) -> int:
        self._threads.append(threading.current_thread())
        return self._f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


@pytest.mark.parametrize("encrypt", [JET_STUB, None], ids=["jet-stub", "plain"])
async def test_file_reads_and_writes_run_off_the_event_loop(
    net: Net,
    tmp_path: Path,
    dest_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    encrypt: str | None,
) -> None:
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "pumped.bin"
    reads: list[threading.Thread] = []
    writes: list[threading.Thread] = []
    real_open_at = getattr(transfer_service, "_open_at", None)
    real_open_part = transfer_service.open_part  # type: ignore[attr-defined]
    if real_open_at is not None:
        monkeypatch.setattr(
            transfer_service, "_open_at", lambda p, o: _Recording(real_open_at(p, o), reads)
        )
    monkeypatch.setattr(
        transfer_service, "open_part", lambda p, o: _Recording(real_open_part(p, o), writes)
    )
    loop_thread = threading.current_thread()
    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, encrypt=encrypt)
    assert out.send.error is None and out.recv.error is None, (out.send.error, out.recv.error)
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()
    assert writes and loop_thread not in writes, "the receiver wrote the file on the event loop"
    assert real_open_at is not None, "the sender opens and reads its file on the event loop"
    assert reads and loop_thread not in reads, "the sender read the file on the event loop"
