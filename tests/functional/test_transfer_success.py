"""Successful transfers on the in-process server: every transport, encrypted and plain."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from jet_trio._xmpp.ns import JET_STUB

from .conftest import Net, leftovers, make_file, run_transfer

SIZE = 300_000


def check_progress(progress: list[tuple[int, int]], size: int) -> None:
    assert progress, "the progress callback was never called"
    done = [d for d, _ in progress]
    assert all(t == size for _, t in progress)
    assert done == sorted(done) and len(set(done)) == len(done), "progress must increase"
    assert done[0] > 0 and done[-1] == size


@pytest.mark.parametrize(
    ("ft_kwargs", "send_kwargs", "transport"),
    [
        ({}, {}, "s5b-direct"),
        ({"direct_addresses": None}, {}, "s5b-proxy"),
        ({}, {"transport": "ibb"}, "ibb"),
        ({"direct_addresses": None, "use_proxies": False}, {}, "ibb"),  # no S5B candidate: fallback
    ],
    ids=["direct", "proxy", "ibb", "fallback"],
)
@pytest.mark.parametrize("encrypt", [JET_STUB, None], ids=["jet-stub", "plain"])
async def test_transfer(
    net: Net,
    tmp_path: Path,
    dest_dir: Path,
    ft_kwargs: dict[str, Any],
    send_kwargs: dict[str, Any],
    transport: str,
    encrypt: str | None,
) -> None:
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "received.bin"
    early: list[Path] = []

    def target_absent(out: object, done: int) -> None:
        # Until everything is verified, nothing may exist under the target name.
        if dest.exists():
            early.append(dest)

    async with net.pair(**ft_kwargs) as (fa, fb):
        out = await run_transfer(
            fa, fb, src, dest, encrypt=encrypt, on_recv_progress=target_absent, **send_kwargs
        )
    assert not early, "the target existed before the transfer was verified"
    assert out.send.error is None and out.recv.error is None, (out.send.error, out.recv.error)
    sent, got = out.send.result, out.recv.result
    assert sent is not None and got is not None
    assert dest.read_bytes() == src.read_bytes()
    assert sent.transport == got.transport == transport
    assert sent.sha256 == got.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert got.hash_verified
    assert got.envelope == sent.envelope == encrypt
    assert (
        got.cipher == sent.cipher == ("urn:xmpp:ciphers:aes-256-gcm-nopadding" if encrypt else None)
    )
    assert got.wire_bytes == sent.wire_bytes == SIZE + (16 if encrypt else 0)
    assert got.path == dest and got.peer == fa.client.jid and sent.peer == fb.client.jid
    assert out.recv.offer is not None and out.recv.offer.encrypted == (encrypt is not None)
    check_progress(out.send.progress, SIZE)
    check_progress(out.recv.progress, SIZE)
    assert not leftovers(dest_dir)
    if transport == "s5b-proxy":
        assert net.relay.payload_seen == SIZE + (16 if encrypt else 0)


async def test_encrypt_auto_picks_a_common_envelope(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    src = make_file(tmp_path, 10_000)
    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest_dir)  # encrypt="auto"; into a directory
    assert out.send.error is None and out.recv.error is None, (out.send.error, out.recv.error)
    assert out.recv.result is not None and out.recv.result.envelope == JET_STUB
    assert (dest_dir / "payload.bin").read_bytes() == src.read_bytes()


async def test_empty_file(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    src = make_file(tmp_path, 0)
    dest = dest_dir / "empty"
    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, encrypt=JET_STUB)
    assert out.send.error is None and out.recv.error is None, (out.send.error, out.recv.error)
    assert dest.read_bytes() == b""
    assert not leftovers(dest_dir)


async def test_overwrite_replaces_an_existing_file(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    src = make_file(tmp_path, 5_000)
    dest = dest_dir / "exists.bin"
    dest.write_bytes(b"old")

    async def accept(offer: Any) -> Any:
        return await offer.accept(dest, overwrite=True)

    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, accept=accept)
    assert out.send.error is None and out.recv.error is None, (out.send.error, out.recv.error)
    assert dest.read_bytes() == src.read_bytes()
