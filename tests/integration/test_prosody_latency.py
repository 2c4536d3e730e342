"""Small transfers through Prosody and the delayed-ACK stalls that Nagle causes there.

Prosody leaves Nagle's algorithm on by default: a small stanza that follows another one waits
until the first is acknowledged, and a Linux client in an interactive exchange delays that ACK by
up to 40 ms. A 1 KiB IBB transfer then took ~140-160 ms on loopback (three to four such stalls)
instead of ~10 ms. The client acknowledges at once (``TCP_QUICKACK`` after each read); the
unit tests check the socket option, ``bench/bench_latency.py`` measures the time.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio

from jet_trio._xmpp.connect import QuickAckStream

from ._servers import ServerInfo
from .test_transfer_prosody import make_file, pair, transfer

pytestmark = pytest.mark.integration


@pytest.mark.skipif(sys.platform != "linux", reason="TCP_QUICKACK is Linux-only")
async def test_small_transfers_through_prosody_use_the_quick_ack_stream(
    prosody: ServerInfo, tmp_path: Path
) -> None:
    """The client's connection to Prosody acknowledges at once (``QuickAckStream`` under TLS),
    and back-to-back small transfers through it complete. How much time that saves is measured
    by ``bench/bench_latency.py`` (1 KiB offer-to-end, with its baseline in the same run), not
    asserted here: a timing bound in a test fails on a loaded machine."""
    src = make_file(tmp_path, 1024)
    async with pair(prosody) as (fa, fb):
        stream = fa.client._stream
        assert isinstance(stream, trio.SSLStream)
        assert isinstance(stream.transport_stream, QuickAckStream)
        for i in range(3):
            await transfer(fa, fb, src, tmp_path / f"received-{i}.bin", transport="ibb")
            assert (tmp_path / f"received-{i}.bin").read_bytes() == src.read_bytes()
