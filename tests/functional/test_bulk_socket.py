"""A sender's S5B data connection (direct and through the proxy) queues the file's bytes as the
system would: trio's 16 KiB cap on unsent bytes (``TCP_NOTSENT_LOWAT``) is lifted for the
data, which made a sender behind a relay wake up for every 16 KiB."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import trio

from jet_trio._transfer import driver
from jet_trio._xmpp.ns import JET_STUB

from .conftest import Net, make_file, run_transfer

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "TCP_NOTSENT_LOWAT"), reason="no TCP_NOTSENT_LOWAT on this system"
)


@pytest.mark.parametrize(
    "ft_kwargs",
    [pytest.param({}, id="direct"), pytest.param({"direct_addresses": None}, id="proxy")],
)
async def test_the_data_connection_is_not_capped_at_16_kib(
    net: Net,
    tmp_path: Path,
    dest_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    ft_kwargs: dict[str, Any],
) -> None:
    seen: list[tuple[int, int]] = []
    real = driver._for_bulk_data

    def recording(stream: trio.abc.SendStream) -> None:
        assert isinstance(stream, trio.SocketStream)
        before = stream.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)
        real(stream)
        seen.append((before, stream.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)))

    monkeypatch.setattr(driver, "_for_bulk_data", recording)
    src = make_file(tmp_path, 3 << 20)
    async with net.pair(**ft_kwargs) as (fa, fb):
        out = await run_transfer(fa, fb, src, dest_dir / "f.bin", encrypt=JET_STUB)
    assert out.send.result is not None, out.send.error
    assert out.recv.result is not None and out.recv.result.hash_verified, out.recv.error
    assert seen == [(16384, 0)]
    assert (dest_dir / "f.bin").read_bytes() == src.read_bytes()
