"""A peer that stops reading, stops sending, or stops answering IQs.

Each case ends on both sides with :class:`jet_trio.TransferTimeout` (reason ``timeout``)
within the configured ``stall_timeout`` / ``negotiation_timeout``, keeps nothing under the
target name, and is followed by a resume of what the receiver kept (or a new transfer when it
kept nothing) between the same two clients, which completes and verifies.

"Stops reading" also checks backpressure: the sender's progress stops at what the transport
can hold in flight (kernel socket buffers, the IBB window), so nothing is buffered without
bound in the sending process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from lxml import etree

import jet_trio
from jet_trio import TransferError, TransferTimeout, find_partials
from jet_trio._transfer.service import FileTransfer
from jet_trio._xmpp.ns import IBB, JET_STUB, JINGLE

from .conftest import (
    Net,
    assert_not_stored_maybe_resumable,
    make_file,
    run_transfer,
)

STALL = 0.5
BIG = 48 << 20  # far more than loopback socket buffers (and the relay) can hold in flight
OPTS: dict[str, Any] = {"stall_timeout": STALL, "negotiation_timeout": STALL}
TRANSPORTS = [
    pytest.param({}, {}, 16 << 20, id="direct"),
    pytest.param({"direct_addresses": None}, {}, 24 << 20, id="proxy"),
    pytest.param({}, {"transport": "ibb"}, 1 << 20, id="ibb"),
]


async def _drop(iq: etree._Element) -> None:
    """An inline iq handler that never answers: a peer that stopped answering."""


async def _transfer_works(fa: FileTransfer, fb: FileTransfer, src: Path, dest: Path) -> None:
    """After the fault, the same two clients complete the file and verify it: the receiver
    resumes what it kept (from the sender, which shares the file), or the file is sent again
    when nothing was kept."""
    partials = find_partials(dest.parent)
    if partials:
        (partial,) = partials
        kept = partial.received
        await fa.share(src)
        with trio.fail_after(10):
            result = await fb.resume(partial, encrypt=JET_STUB)
        assert result.hash_verified
        assert result.wire_bytes == result.size - kept + 16
    else:
        out = await run_transfer(fa, fb, src, dest, encrypt=JET_STUB)
        assert out.send.result is not None, out.send.error
        assert out.recv.result is not None and out.recv.result.hash_verified, out.recv.error
    assert dest.read_bytes() == src.read_bytes()
    assert not find_partials(dest.parent)


@pytest.mark.parametrize(("ft_kwargs", "send_kwargs", "in_flight"), TRANSPORTS)
async def test_peer_stops_reading(
    net: Net,
    tmp_path: Path,
    dest_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    ft_kwargs: dict[str, Any],
    send_kwargs: dict[str, Any],
    in_flight: int,
) -> None:
    """The receiver accepts, the transport is set up, and then it never reads: the sender's
    writes block once the transport is full, and after ``stall_timeout`` the sender ends the
    session with ``timeout``."""
    src = make_file(tmp_path, BIG)
    dest = dest_dir / "stalled.bin"
    async with net.pair(**OPTS, **ft_kwargs) as (fa, fb):

        async def not_reading(session: Any, *args: Any) -> Any:
            await session.watch()  # answers Jingle, reads no data

        with monkeypatch.context() as patch:
            patch.setattr(fb, "_receive_into", not_reading)
            out = await run_transfer(fa, fb, src, dest, encrypt=JET_STUB, **send_kwargs)
        err = out.send.raised(TransferTimeout)
        assert err.reason == "timeout" and "accepted no data" in str(err), err
        sent = out.send.progress[-1][0] if out.send.progress else 0
        assert sent <= in_flight, f"{sent} bytes left the sender for a peer that reads nothing"
        peer_err = out.recv.raised(TransferTimeout)
        assert peer_err.reason == "timeout"
        assert_not_stored_maybe_resumable(dest, src)
        await _transfer_works(fa, fb, src, dest)


@pytest.mark.parametrize(("ft_kwargs", "send_kwargs", "in_flight"), TRANSPORTS)
async def test_peer_stops_sending(
    net: Net,
    tmp_path: Path,
    dest_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    ft_kwargs: dict[str, Any],
    send_kwargs: dict[str, Any],
    in_flight: int,
) -> None:
    """The sender sets up the transport and then sends nothing: the receiver gives up after
    ``stall_timeout``."""
    src = make_file(tmp_path, 100_000)
    dest = dest_dir / "stalled.bin"
    async with net.pair(**OPTS, **ft_kwargs) as (fa, fb):

        async def not_sending(session: Any, *args: Any) -> int:
            await session.watch()
            return 0

        with monkeypatch.context() as patch:
            patch.setattr(fa, "_send_data", not_sending)
            out = await run_transfer(fa, fb, src, dest, encrypt=JET_STUB, **send_kwargs)
        err = out.recv.raised(TransferTimeout)
        assert err.reason == "timeout" and "no data came from" in str(err), err
        assert out.send.raised(TransferTimeout).reason == "timeout"
        assert_not_stored_maybe_resumable(dest, src)
        await _transfer_works(fa, fb, src, dest)


async def test_peer_never_answers_the_offer(net: Net, tmp_path: Path) -> None:
    """A peer whose client takes Jingle iqs and never answers them (not even an error):
    send_file raises TransferTimeout after ``negotiation_timeout`` instead of hanging."""
    src = make_file(tmp_path, 1000)
    async with (
        net.client("alice", "send") as a,
        net.client("bob", "recv") as b,
        jet_trio.open_file_transfer(a, **OPTS) as fa,
    ):
        b.register_inline_iq_handler("set", f"{{{JINGLE}}}jingle", _drop)
        with trio.fail_after(5):
            await a.wait_available(b.jid)
            with pytest.raises(TransferTimeout) as caught:
                await fa.send_file(src, b.jid, encrypt=None)
    assert caught.value.reason == "timeout"
    assert f"{b.jid} did not answer our session-initiate within {STALL:g} s" in str(caught.value)
    assert not fa._sessions


@pytest.mark.usefixtures("offers_with_hash")  # what was kept is resumed by request
@pytest.mark.parametrize("stage", ["after-accept", "during-ibb-data"])
async def test_peer_stops_answering_mid_session(
    net: Net,
    tmp_path: Path,
    dest_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    stage: str,
) -> None:
    """The receiver's client stops answering iqs part-way: right after it accepted (the
    sender's transport-info goes unanswered), or while IBB data flows (no more block acks,
    so the sender's window stays full). Both sides end with a timeout; then, answering
    again, the same clients complete a transfer."""
    # Larger than the receiver's IBB buffer: acks stop well before the end.
    src = make_file(tmp_path, 8_000_000)
    dest = dest_dir / "unanswered.bin"
    send_kwargs: dict[str, Any] = {"transport": "ibb"} if stage == "during-ibb-data" else {}
    async with net.pair(**OPTS) as (fa, fb):
        client = fb.client
        tag = f"{{{IBB}}}data" if stage == "during-ibb-data" else f"{{{JINGLE}}}jingle"
        original = client._inline_handlers[("set", tag)]

        async def accept(offer: jet_trio.IncomingOffer) -> Any:
            if stage == "after-accept":
                real_send = offer._session.send

                async def send_then_go_silent(msg: Any) -> None:
                    await real_send(msg)
                    client.register_inline_iq_handler("set", tag, _drop)

                with monkeypatch.context() as patch:
                    patch.setattr(offer._session, "send", send_then_go_silent)
                    return await offer.accept(dest)
            return await offer.accept(
                dest, progress=lambda *_: client.register_inline_iq_handler("set", tag, _drop)
            )

        out = await run_transfer(fa, fb, src, dest, accept=accept, **send_kwargs)
        client.register_inline_iq_handler("set", tag, original)
        err = out.send.raised(TransferTimeout)
        assert err.reason == "timeout", err
        assert isinstance(out.recv.error, TransferError), out.recv.error
        assert_not_stored_maybe_resumable(dest, src)
        assert not fa._sessions and not fb._sessions
        await _transfer_works(fa, fb, src, dest)
