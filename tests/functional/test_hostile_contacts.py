"""A contact attacking the receiver: planted partial-download state, unanswered requests, floods
of Jingle messages, ambiguous encryption, too many offers (issue: hostile contacts)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
from pathlib import Path
from typing import Any, Literal

import pytest
import trio
import trio.testing
from lxml import etree

import jet_trio
import jet_trio._transfer.driver as transfer_driver
import jet_trio._transfer.service as transfer_service
from jet_trio import TransferTimeout, find_partials
from jet_trio._plugins.builtin_ciphers import AESGCMCipher
from jet_trio._transfer.files import Partial
from jet_trio._transfer.service import FileTransfer, open_file_transfer
from jet_trio._transfer.session import Step
from jet_trio._transports.ibb import IBBStream
from jet_trio._xmpp.ns import DISCO_INFO, IBB, JET, JET_STUB, JINGLE, JINGLE_S5B
from jet_trio._xmpp.stanza import StanzaError, make_iq, make_result

from .conftest import (
    TEST_ENVELOPE_NS,
    Net,
    TestEnvelope,
    TestEnvelopePlugin,
    make_file,
    run_transfer,
)


def interrupted(dest: Path, src: Path, peer: jet_trio.JID, kept: int) -> Partial:
    """A partial download of ``src`` into ``dest`` holding its first ``kept`` bytes."""
    import hashlib

    data = src.read_bytes()
    p = Partial.create(
        dest,
        peer,
        dest.name,
        len(data),
        hashlib.sha256(data).hexdigest(),
        JET_STUB,
    )
    p.part.write_bytes(data[:kept])
    p.save()
    return p


# -- 1. partial-download state -------------------------------------------------------------------


async def test_resume_never_replaces_an_existing_file(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    """The no-overwrite rule of receive holds for resume: a file that took the target name
    since the download was interrupted is left alone, and the partial download is kept."""
    src = make_file(tmp_path, 50_000)
    dest = dest_dir / "file.bin"
    async with net.pair() as (fa, fb):
        partial = interrupted(dest, src, fa.client.jid, 20_000)
        dest.write_bytes(b"precious")
        await fa.share(src)
        with trio.fail_after(5), pytest.raises(FileExistsError, match="already exists"):
            await fb.resume(partial.sidecar, encrypt=JET_STUB)
    assert dest.read_bytes() == b"precious"
    assert find_partials(dest_dir) == [partial]


async def test_resume_of_a_kept_partial_completes(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    """The whole file's hash gates a resumed download: a kept prefix that does not belong to
    the file (unauthenticated plaintext, say) fails it, and nothing is stored."""
    src = make_file(tmp_path, 50_000)
    dest = dest_dir / "file.bin"
    async with net.pair() as (fa, fb):
        partial = interrupted(dest, src, fa.client.jid, 20_000)
        await fa.share(src)
        with trio.fail_after(5):
            await fb.resume(partial.sidecar, encrypt=JET_STUB)
        assert dest.read_bytes() == src.read_bytes()
        assert find_partials(dest_dir) == []
        dest.unlink()
        forged = interrupted(dest, src, fa.client.jid, 20_000)
        forged.part.write_bytes(b"\0" * 20_000)
        with trio.fail_after(5), pytest.raises(Exception, match="hash"):
            await fb.resume(forged.sidecar, encrypt=JET_STUB)
    assert not dest.exists()


async def quietly(fn: Any) -> None:
    """Run ``fn()``, ignoring how it fails (a side the test does not look at)."""
    with contextlib.suppress(Exception):
        await fn()


# -- 2. every wait on a peer is bounded ------------------------------------------------------------


def silence(
    client: jet_trio.Client, type_: Literal["get", "set"], tag: str, *, ack: bool = False
) -> None:
    """Make ``client`` take iqs with payload ``tag`` and never act on them (with ``ack``:
    answer the iq, then do nothing)."""

    async def swallow(iq: etree._Element) -> None:
        if ack:
            await client.send(make_result(iq))

    client.register_inline_iq_handler(type_, tag, swallow)


@pytest.mark.usefixtures("offers_with_hash")  # the hash is not what this is about
async def test_receive_ends_when_the_sender_never_answers_our_ibb_close(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender that never closes the in-band bytestream nor answers our <close>: the file
    lands, and accept() returns within the negotiation timeout (it used to wait for ever)."""
    src = make_file(tmp_path, 30_000)
    real_aclose = IBBStream.aclose
    async with net.pair(receiver={"negotiation_timeout": 1}) as (fa, fb):
        silence(fa.client, "set", f"{{{IBB}}}close")

        async def aclose(self: IBBStream) -> None:
            if self in fa._ibb.values():
                await trio.sleep_forever()  # the hostile sender never closes
            await real_aclose(self)

        monkeypatch.setattr(IBBStream, "aclose", aclose)
        async with trio.open_nursery() as n:
            n.start_soon(lambda: fa.send_file(src, fb.client.jid, encrypt=None, transport="ibb"))
            with trio.fail_after(10):
                offer = await fb.next_offer()
                result = await offer.accept(dest_dir)
            n.cancel_scope.cancel()
    assert result.path.read_bytes() == src.read_bytes()


async def test_sender_gives_up_when_the_ibb_open_is_never_answered(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    src = make_file(tmp_path, 30_000)
    async with net.pair(negotiation_timeout=1) as (fa, fb):
        silence(fb.client, "set", f"{{{IBB}}}open")
        out = await run_transfer(fa, fb, src, dest_dir, encrypt=None, transport="ibb")
    assert "IBB <open>" in str(out.send.raised(TransferTimeout))


async def test_request_gives_up_when_the_holder_never_accepts(net: Net, tmp_path: Path) -> None:
    """The holder acknowledges our session-initiate and then stays silent."""
    async with net.pair(negotiation_timeout=1) as (fa, fb):
        silence(fa.client, "set", f"{{{JINGLE}}}jingle", ack=True)
        with trio.fail_after(10), pytest.raises(TransferTimeout, match="file request"):
            await fb.request_file(fa.client.jid, "ab" * 32, tmp_path, encrypt=None)


async def test_sending_gives_up_when_the_peer_never_answers_disco(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    src = make_file(tmp_path, 1000)
    async with net.pair(negotiation_timeout=1) as (fa, fb):
        silence(fb.client, "get", f"{{{DISCO_INFO}}}query")
        fa.client._peer_caps.clear()  # nothing cached: the peer must be asked
        with trio.fail_after(10), pytest.raises(TransferTimeout, match="what it supports"):
            await fa.send_file(src, fb.client.jid)


class StuckEnvelope(TestEnvelope):
    """An envelope method that never finishes opening (say, a key fetch the peer stalls)."""

    __test__ = False

    async def decrypt(self, element: Any, sender: Any, cipher: Any) -> Any:
        await trio.sleep_forever()


async def test_receiving_gives_up_when_the_envelope_never_opens(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    src = make_file(tmp_path, 1000)
    receiver = {"negotiation_timeout": 1, "extra_plugins": [TestEnvelopePlugin(StuckEnvelope())]}
    sender = {"extra_plugins": [TestEnvelopePlugin(TestEnvelope())]}
    async with net.pair(sender=sender, receiver=receiver) as (fa, fb):
        out = await run_transfer(fa, fb, src, dest_dir / "x.bin", encrypt=TEST_ENVELOPE_NS)
    assert "took too long" in str(out.recv.error)
    assert not (dest_dir / "x.bin").exists()


# -- 5. a session's memory is bounded ------------------------------------------------------------


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def transport_info(sid: str, pad: int) -> etree._Element:
    """A transport-info for session ``sid`` carrying ``pad`` bytes of junk."""
    jingle = etree.Element(f"{{{JINGLE}}}jingle", action="transport-info", sid=sid)
    content = etree.SubElement(
        jingle, f"{{{JINGLE}}}content", creator="initiator", name="a-file-offer"
    )
    transport = etree.SubElement(content, f"{{{JINGLE_S5B}}}transport", sid="t")
    etree.SubElement(transport, f"{{{JINGLE_S5B}}}candidate-used", cid="c")
    etree.SubElement(transport, "{urn:example:pad}pad").text = "A" * pad
    return jingle


async def flood(client: jet_trio.Client, to: jet_trio.JID, sid: str, n: int, pad: int) -> list[str]:
    """Send ``n`` padded transport-infos; the error condition (or "ok") of each answer."""
    answers = []
    for _ in range(n):
        try:
            await client.iq(make_iq("set", transport_info(sid, pad), to=to))
            answers.append("ok")
        except StanzaError as exc:
            answers.append(exc.condition)
    return answers


async def test_transport_infos_during_the_data_phase_are_refused_not_kept(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The red team's flood: 100 KiB transport-infos for a session whose data is flowing.
    Each is answered out-of-order and none is kept (they used to pile up in the session's
    stash: +150 MB per 1000)."""
    src = make_file(tmp_path, 30_000)
    async with net.pair() as (fa, fb):
        sending = trio.Event()

        async def hang(session: Any, *args: Any) -> int:
            session.machine.step(Step.DATA)
            sending.set()
            await trio.sleep_forever()
            raise AssertionError

        monkeypatch.setattr(fa, "_send_data", hang)
        async with trio.open_nursery() as n:
            n.start_soon(lambda: fa.send_file(src, fb.client.jid, encrypt=None, transport="ibb"))
            with trio.fail_after(10):
                offer = await fb.next_offer()
                n.start_soon(offer.accept, dest_dir)
                await sending.wait()
                session = offer._session
                await trio.testing.wait_all_tasks_blocked(0.05)
                assert session.machine.data_phase
            before = rss()
            with trio.fail_after(60):
                answers = await flood(fa.client, fb.client.jid, session.jingle.sid, 300, 100_000)
            grown = rss() - before
            assert set(answers) == {"unexpected-request"}, answers[:3]
            assert session.machine.backlog() == 0
            assert grown < 20 << 20, f"memory grew by {grown >> 20} MiB"
            n.cancel_scope.cancel()


async def test_a_session_holds_a_bounded_number_of_messages(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    """An offer nobody has answered yet: its session keeps at most a few messages; the rest
    are refused with resource-constraint (the peer may try again later)."""
    src = make_file(tmp_path, 1000)
    async with net.pair() as (fa, fb), trio.open_nursery() as n:
        n.start_soon(quietly, lambda: fa.send_file(src, fb.client.jid, encrypt=None))
        with trio.fail_after(10):
            offer = await fb.next_offer()
            answers = await flood(fa.client, fb.client.jid, offer._session.jingle.sid, 40, 10)
        assert answers.count("ok") == 16, answers
        assert set(answers[16:]) == {"resource-constraint"}, answers
        assert offer._session.machine.backlog() == 16
        await offer.reject()
        n.cancel_scope.cancel()


# -- 6. ambiguous encryption ---------------------------------------------------------------------


async def test_two_security_elements_are_refused_not_taken_as_unencrypted(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An offer with two <security> under <jingle> (none in the content): even a receiver
    that accepts unencrypted files refuses it, before the application sees it."""
    src = make_file(tmp_path, 1000)
    real = transfer_driver.build_jingle  # type: ignore[attr-defined]

    def build(msg: Any) -> etree._Element:
        el = real(msg)
        if msg.action.value == "session-initiate":
            for security in el.iter(f"{{{JET}}}security"):
                parent = security.getparent()
                assert parent is not None
                parent.remove(security)
                security.attrib.pop("name")
                el.append(security)
                el.append(copy.deepcopy(security))
                break
        return el

    monkeypatch.setattr(transfer_driver, "build_jingle", build)
    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest_dir / "x.bin", encrypt=JET_STUB, deadline=5)
    assert out.recv.offer is None, out.recv.offer
    err = out.send.raised(jet_trio.TransferError)
    assert err.reason == "security-error" and "ambiguous" in str(err)
    assert not (dest_dir / "x.bin").exists()


async def test_an_offer_beyond_the_cipher_limit_is_refused_before_accepting(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_file(tmp_path, 1000)
    limit = AESGCMCipher(32, "x").max_plaintext_size
    real = transfer_service.build_description  # type: ignore[attr-defined]

    def build(file: Any, *, request: bool = False) -> Any:
        return real(dataclasses.replace(file, size=limit + 1), request=request)

    monkeypatch.setattr(transfer_service, "build_description", build)
    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest_dir / "x.bin", encrypt=JET_STUB, deadline=5)
    assert out.recv.offer is None, out.recv.offer
    err = out.send.raised(jet_trio.TransferError)
    assert err.reason == "failed-application" and "may encrypt" in str(err)


# -- 4. one contact cannot monopolise a receiver -------------------------------------------------


async def send_capturing(
    ft: FileTransfer,
    src: Path,
    to: jet_trio.JID,
    errors: list[BaseException],
    failed: trio.Event | None = None,
    when: int = 0,
) -> None:
    """Send ``src``; a failure goes to ``errors`` (``failed`` is set once there are ``when``)."""
    try:
        await ft.send_file(src, to, encrypt=None)
    except Exception as exc:
        errors.append(exc)
        if failed is not None and len(errors) >= when:
            failed.set()


async def test_one_contact_cannot_crowd_out_another(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    """Alice's offers beyond her quota are refused busy; Carol's offer still gets in."""
    src = make_file(tmp_path, 1000)
    errors: list[BaseException] = []
    async with (
        net.pair(receiver={"max_offers_per_peer": 2, "max_pending_offers": 3}) as (fa, fb),
        net.client("carol", "c") as c,
        open_file_transfer(c) as fc,
        trio.open_nursery() as n,
    ):
        with trio.fail_after(10):
            await c.wait_available(fb.client.jid)
            three_refused = trio.Event()
            for _ in range(5):
                n.start_soon(send_capturing, fa, src, fb.client.jid, errors, three_refused, 3)
            await three_refused.wait()
            n.start_soon(send_capturing, fc, src, fb.client.jid, errors)
            offers = [await fb.next_offer() for _ in range(3)]
        assert sorted(str(o.peer.bare) for o in offers) == [
            "alice@localhost",
            "alice@localhost",
            "carol@localhost",
        ]
        assert all(getattr(e, "reason", None) == "busy" for e in errors), errors
        assert "too many offers from alice@localhost" in str(errors[0])
        for offer in offers:
            await offer.reject()
    assert fb._switchboard.offers_of == fb._switchboard.transfers_of == {}


async def test_queued_offers_expire(net: Net, tmp_path: Path) -> None:
    """An offer the application never takes is refused (timeout) and frees its place."""
    src = make_file(tmp_path, 1000)
    async with net.pair(receiver={"offer_timeout": 0.5}) as (fa, fb):
        with trio.fail_after(10), pytest.raises(TransferTimeout, match="not answered within"):
            await fa.send_file(src, fb.client.jid, encrypt=None)
        assert not fb._switchboard.queue and fb._switchboard.offers_of == {}


async def test_running_transfers_per_contact_are_bounded(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_file(tmp_path, 1000)
    errors: list[BaseException] = []
    async with net.pair(receiver={"max_transfers_per_peer": 1}) as (fa, fb):
        sending = trio.Event()

        async def hang(session: Any, *args: Any) -> int:
            sending.set()
            await trio.sleep_forever()
            raise AssertionError

        monkeypatch.setattr(fa, "_send_data", hang)
        async with trio.open_nursery() as n:
            n.start_soon(send_capturing, fa, src, fb.client.jid, errors)
            with trio.fail_after(10):
                offer = await fb.next_offer()
                n.start_soon(quietly, lambda: offer.accept(dest_dir))
                await sending.wait()
                await send_capturing(fa, src, fb.client.jid, errors)
            assert len(errors) == 1 and "too many transfers" in str(errors[0]), errors
            assert fb._switchboard.transfers_of == {fa.client.jid.bare: 1}
            n.cancel_scope.cancel()


async def test_a_dripping_sender_is_cut_off_by_the_minimum_throughput(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A byte every 0.2 s keeps a 1 s stall timeout from firing, but not the minimum
    throughput (the red team's byte every 59 s against the 60 s stall timeout, scaled)."""
    src = make_file(tmp_path, 100_000)
    receiver = {"stall_timeout": 1, "min_throughput": 1000, "throughput_window": 1}

    async def drip(session: Any, established: Any, *args: Any) -> int:
        for _ in range(100):
            await established.stream.send_all(b"x")
            await trio.sleep(0.2)
        raise AssertionError("the receiver went on taking the drip")

    async with net.pair(receiver=receiver) as (fa, fb):
        monkeypatch.setattr(fa, "_send_data", drip)
        start = trio.current_time()
        out = await run_transfer(fa, fb, src, dest_dir / "x.bin", encrypt=None, deadline=15)
    err = out.recv.raised(TransferTimeout)
    assert "below the minimum" in str(err)
    assert trio.current_time() - start < 5
