"""Failing transfers through a real Prosody: tampering, decline, cancellation, server crash.

The same checks as ``tests/functional`` (typed exception on both sides, the Jingle reason the
peer saw, nothing under the target name), with Prosody's routing, IBB and proxy65 in between.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import jet_trio
from jet_trio import EncryptionFailed, TransferCancelled, TransferDeclined, open_client
from jet_trio._transfer.service import FileTransfer, IncomingOffer, open_file_transfer
from jet_trio._xmpp.ns import JET_STUB
from jet_trio.plugin import TagMismatch

from ..functional.conftest import (
    TEST_CIPHER_URN,
    CipherPlugin,
    CorruptingCipher,
    assert_not_stored_maybe_resumable,
    assert_nothing_stored,
    make_file,
    run_transfer,
)
from ._servers import ProsodyFactory, ServerInfo

pytestmark = pytest.mark.integration

SIZE = 300_000
BIG = 4_000_000


def _opts(server: ServerInfo) -> dict[str, Any]:
    return {"host": server.host, "port": server.port, "ca_file": server.ca_file}


@asynccontextmanager
async def pair(
    server: ServerInfo,
    sender: dict[str, Any] | None = None,
    receiver: dict[str, Any] | None = None,
    **both: Any,
) -> AsyncIterator[tuple[FileTransfer, FileTransfer]]:
    opts = _opts(server)
    async with (
        open_client(server.jid("alice") + "/fail-send", server.accounts["alice"], **opts) as a,
        open_client(server.jid("bob") + "/fail-recv", server.accounts["bob"], **opts) as b,
        open_file_transfer(a, allow_stub_envelope=True, **{**both, **(sender or {})}) as fa,
        open_file_transfer(b, allow_stub_envelope=True, **{**both, **(receiver or {})}) as fb,
    ):
        with trio.fail_after(5):
            await a.wait_available(b.jid)
            await b.wait_available(a.jid)
        yield fa, fb


@pytest.mark.parametrize(
    "ft_kwargs",
    [{}, {"direct_addresses": None}],
    ids=["direct", "proxy65"],
)
async def test_tampered_ciphertext(
    prosody: ServerInfo, tmp_path: Path, ft_kwargs: dict[str, Any]
) -> None:
    """A sender-side cipher plugin flips one ciphertext byte: the receiver's tag check fails,
    both sides get a security error, nothing is stored."""
    src = make_file(tmp_path, SIZE)
    dest = tmp_path / "tampered.bin"
    bad = CorruptingCipher()
    bad.flip_ct = SIZE // 3
    async with pair(
        prosody,
        sender={"extra_plugins": [CipherPlugin(bad)]},
        receiver={"extra_plugins": [CipherPlugin(CorruptingCipher())]},
        **ft_kwargs,
    ) as (fa, fb):
        out = await run_transfer(
            fa, fb, src, dest, deadline=30, encrypt=JET_STUB, cipher=TEST_CIPHER_URN
        )
    err = out.recv.raised(EncryptionFailed)
    assert err.reason == "security-error" and "tag" in str(err)
    assert isinstance(err.__cause__, TagMismatch)
    sent = out.send.raised(EncryptionFailed)
    assert sent.reason == "security-error" and str(fb.client.jid) in str(sent)
    assert_nothing_stored(dest)


async def test_decline(prosody: ServerInfo, tmp_path: Path) -> None:
    src = make_file(tmp_path, 1000)
    dest = tmp_path / "declined.bin"

    async def reject(offer: IncomingOffer) -> None:
        await offer.reject()

    async with pair(prosody) as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, accept=reject, deadline=30, encrypt=JET_STUB)
    err = out.send.raised(TransferDeclined)
    assert err.reason == "decline" and str(fb.client.jid) in str(err)
    assert out.recv.error is None
    assert_nothing_stored(dest)


@pytest.mark.parametrize("side", ["sender", "receiver"])
@pytest.mark.parametrize(
    ("ft_kwargs", "send_kwargs"),
    [({}, {}), ({}, {"transport": "ibb"})],
    ids=["s5b", "ibb"],
)
async def test_cancel_during_data(
    prosody: ServerInfo,
    tmp_path: Path,
    side: str,
    ft_kwargs: dict[str, Any],
    send_kwargs: dict[str, Any],
) -> None:
    src = make_file(tmp_path, BIG)
    dest = tmp_path / "cancelled.bin"
    kwargs: dict[str, Any] = {}
    if side == "sender":
        kwargs["on_send_progress"] = lambda out, done: out.send.scope.cancel()
    else:
        kwargs["on_recv_progress"] = lambda out, done: out.recv.scope.cancel()
    async with pair(prosody, **ft_kwargs) as (fa, fb):
        out = await run_transfer(
            fa, fb, src, dest, deadline=30, encrypt=JET_STUB, **kwargs, **send_kwargs
        )
    me, peer = (out.send, out.recv) if side == "sender" else (out.recv, out.send)
    assert me.scope.cancelled_caught and me.result is None and me.error is None, me.error
    err = peer.raised(TransferCancelled)
    assert err.reason == "cancel"
    assert_not_stored_maybe_resumable(dest, src)


@pytest.mark.usefixtures("offers_with_hash")  # resumed by request: needs the hash
@pytest.mark.parametrize(
    "send_kwargs",
    [pytest.param({}, id="s5b"), pytest.param({"transport": "ibb"}, id="ibb")],
)
async def test_server_killed_mid_transfer(
    prosody_factory: ProsodyFactory, tmp_path: Path, send_kwargs: dict[str, Any]
) -> None:
    """Prosody crashes while data moves: both clients report ConnectionLost from their
    ``open_client`` block (the transfers inside are cancelled), nothing is stored under the
    target name, and nothing hangs. Prosody is then restarted, and the receiver resumes the
    kept partial from the sender, which shares the file: it completes and verifies."""
    server = prosody_factory()
    info = server.info
    src = make_file(tmp_path, 20_000_000)
    dest = tmp_path / "crashed.bin"
    opts = _opts(info)
    ft_opts: dict[str, Any] = {
        "allow_stub_envelope": True,
        "direct_addresses": None,
        "negotiation_timeout": 5,
    }
    bob_ready = trio.Event()
    moving = trio.Event()
    bob_jid = jet_trio.JID(info.jid("bob") + "/crash-recv")
    results: dict[str, Any] = {}

    def progress(done: int, total: int) -> None:
        moving.set()  # the receiver's: it has written some bytes

    async def alice() -> None:
        try:
            async with (
                open_client(info.jid("alice") + "/crash-send", info.accounts["alice"], **opts) as a,
                open_file_transfer(a, **ft_opts) as fa,
            ):
                await bob_ready.wait()
                await a.wait_available(bob_jid)
                results["send"] = await fa.send_file(src, bob_jid, encrypt=JET_STUB, **send_kwargs)
        except Exception as exc:
            results["alice"] = exc

    async def bob() -> None:
        try:
            async with (
                open_client(bob_jid, info.accounts["bob"], **opts) as b,
                open_file_transfer(b, **ft_opts) as fb,
            ):
                bob_ready.set()
                offer = await fb.next_offer()
                results["recv"] = await offer.accept(dest, progress=progress)
        except Exception as exc:
            results["bob"] = exc

    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            n.start_soon(alice)
            n.start_soon(bob)
            await moving.wait()
            server.kill()
    assert "send" not in results and "recv" not in results, results
    # One clear exception per client block (not a group): the lost connection.
    for who in ("alice", "bob"):
        assert isinstance(results.get(who), jet_trio.ConnectionLost), results
    assert_not_stored_maybe_resumable(dest, src)
    # Kept even when the crash ended the encrypted stream cleanly before its tag (a FIN, not
    # a reset): the whole file's hash is checked when the resume completes.
    (partial,) = jet_trio.find_partials(tmp_path)
    kept = partial.received
    assert 0 < kept < len(src.read_bytes())

    await trio.to_thread.run_sync(server.start)
    with trio.fail_after(30):
        # Reconnecting with the same resources: the partial names the sender's full JID.
        async with (
            open_client(info.jid("alice") + "/crash-send", info.accounts["alice"], **opts) as a,
            open_client(bob_jid, info.accounts["bob"], **opts) as b,
            open_file_transfer(a, **ft_opts) as fa,
            open_file_transfer(b, **ft_opts) as fb,
        ):
            await b.wait_available(a.jid)
            await fa.share(src)
            result = await fb.resume(partial, encrypt=JET_STUB, **send_kwargs)
    assert result.hash_verified and dest.read_bytes() == src.read_bytes()
    assert result.wire_bytes == result.size - kept + 16
    assert not jet_trio.find_partials(tmp_path)
