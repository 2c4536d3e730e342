"""Every offer gets an answer, and no sender waits for one without a bound."""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import pytest
import trio

import jet_trio
from jet_trio import IncomingOffer, TransferDeclined, TransferTimeout
from jet_trio._xmpp.ns import JET_STUB

from .conftest import Net, assert_nothing_stored, make_file, run_transfer


async def test_dropped_offer_is_rejected_with_a_warning(
    net: Net, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = make_file(tmp_path, 10_000)
    async with net.pair() as (fa, fb):
        with trio.fail_after(10):
            async with trio.open_nursery() as n:

                async def drop() -> None:
                    offer = await fb.next_offer()
                    assert offer.name == src.name
                    del offer  # logged and forgotten, never answered
                    gc.collect()

                n.start_soon(drop)
                with pytest.raises(TransferDeclined, match="dropped without an answer"):
                    await fa.send_file(src, fb.client.jid, encrypt=JET_STUB)
    assert any(
        r.levelno == logging.WARNING and "dropped without an answer" in r.getMessage()
        for r in caplog.records
    )


async def test_offers_unanswered_when_the_service_ends_are_rejected(
    net: Net, tmp_path: Path
) -> None:
    """One offer held by the application, one still queued: both senders get ``decline``
    when the receiver's ``open_file_transfer`` block ends."""
    src = make_file(tmp_path, 10_000)
    errors: list[BaseException] = []
    async with (
        net.client("alice", "send") as a,
        net.client("carol", "send") as c,
        net.client("bob", "recv") as b,
        jet_trio.open_file_transfer(a, allow_stub_envelope=True) as fa,
        jet_trio.open_file_transfer(c, allow_stub_envelope=True) as fc,
    ):
        with trio.fail_after(10):
            await a.wait_available(b.jid)
            await c.wait_available(b.jid)

            async def send(ft: jet_trio.FileTransfer) -> None:
                try:
                    await ft.send_file(src, b.jid, encrypt=JET_STUB)
                except jet_trio.TransferError as exc:
                    errors.append(exc)

            async with trio.open_nursery() as n:
                held: list[IncomingOffer] = []
                async with jet_trio.open_file_transfer(b, allow_stub_envelope=True) as fb:
                    n.start_soon(send, fa)
                    held.append(await fb.next_offer())  # taken, never answered
                    n.start_soon(send, fc)
                    while len(fb._switchboard.unanswered) < 2:  # noqa: ASYNC110 - carol's offer queued
                        await trio.sleep(0.01)
    assert len(errors) == 2
    assert all(isinstance(e, TransferDeclined) for e in errors), errors
    assert all("stopped receiving" in str(e) for e in errors), errors


async def test_sender_stops_waiting_after_accept_timeout(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    """A receiver that never answers: the sender raises TransferTimeout after its bound and
    terminates the session; an accept after that fails and stores nothing."""
    src = make_file(tmp_path, 10_000)
    dest = dest_dir / src.name
    late: list[jet_trio.TransferError] = []

    async def accept_too_late(offer: IncomingOffer) -> None:
        await trio.sleep(2.5)
        try:
            await offer.accept(dest_dir)
        except jet_trio.TransferError as exc:
            late.append(exc)

    async with net.pair(sender={"accept_timeout": 1.0}) as (fa, fb):
        start = trio.current_time()
        out = await run_transfer(fa, fb, src, dest, accept=accept_too_late, encrypt=JET_STUB)
        elapsed = trio.current_time() - start
    err = out.send.raised(TransferTimeout)
    assert "did not accept or decline" in str(err) and err.reason == "timeout"
    assert elapsed < 10
    assert len(late) == 1 and late[0].reason == "timeout", late
    assert_nothing_stored(dest)


async def test_accept_timeout_per_call(net: Net, tmp_path: Path) -> None:
    src = make_file(tmp_path, 10_000)
    async with net.pair() as (fa, fb):
        held: list[IncomingOffer] = []

        async def hold() -> None:
            held.append(await fb.next_offer())  # kept, never answered

        with trio.fail_after(10):
            async with trio.open_nursery() as n:
                n.start_soon(hold)
                with pytest.raises(TransferTimeout):
                    await fa.send_file(src, fb.client.jid, encrypt=JET_STUB, accept_timeout=0.5)


def test_default_accept_timeout_suits_a_person() -> None:
    import inspect

    default = inspect.signature(jet_trio.open_file_transfer).parameters["accept_timeout"].default
    assert default == 300.0


async def test_unusable_destination_answers_the_offer(net: Net, tmp_path: Path) -> None:
    """An error in accept before anything was accepted (here: no such directory) still ends
    the session with a reason the sender sees."""
    src = make_file(tmp_path, 10_000)
    missing = tmp_path / "no-such-dir" / "f.bin"

    async def accept(offer: IncomingOffer) -> jet_trio.TransferResult:
        return await offer.accept(missing)

    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, missing, accept=accept, encrypt=JET_STUB)
    assert isinstance(out.recv.error, FileNotFoundError), out.recv.error
    assert out.send.raised(jet_trio.TransferError).reason == "failed-application"


async def test_peer_answering_twice_is_refused(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    """A second session-accept (a peer answering twice) is refused with an iq error by the
    sender's Jingle state machine; the transfer itself completes."""
    from jet_trio._jingle.message import JingleAction, JingleMessage, build_jingle
    from jet_trio._xmpp.stanza import make_iq

    src = make_file(tmp_path, 1_500_000)
    refused: list[BaseException] = []

    async def accept_twice(offer: IncomingOffer) -> jet_trio.TransferResult:
        session = offer._session
        content = offer._offer.content
        again = JingleMessage(JingleAction.SESSION_ACCEPT, session.jingle.sid, contents=(content,))
        sent_again = False

        async def answer_again() -> None:
            try:
                await offer._session.client.iq(make_iq("set", build_jingle(again), to=offer.peer))
            except jet_trio.StanzaError as exc:
                refused.append(exc)

        async with trio.open_nursery() as n:

            def progress(done: int, total: int) -> None:
                nonlocal sent_again
                if not sent_again:
                    sent_again = True
                    n.start_soon(answer_again)

            return await offer.accept(dest_dir, progress=progress)

    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest_dir, accept=accept_twice, encrypt=JET_STUB)
    assert out.send.error is None and out.recv.error is None, (out.send.error, out.recv.error)
    assert len(refused) == 1, refused
    assert "out-of-order" in str(refused[0]) or "unexpected" in str(refused[0]), refused
    assert (dest_dir / src.name).read_bytes() == src.read_bytes()
