"""The sans-IO file-transfer session (jet_trio._transfer.session): every decision the socket
tests cover, and the crossing cases, without sockets or trio.

Two machines talk through a :class:`Wire` that serialises every message to XML and parses it
back, as the driver does, and applies it to the receiving side's Jingle state machine first.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from lxml import etree

from jet_trio import JID
from jet_trio._jet.element import build_security
from jet_trio._jet.stream import TruncatedStream
from jet_trio._jingle.machine import SessionRegistry, SessionState
from jet_trio._jingle.message import (
    Content,
    JingleAction,
    JingleLocalError,
    JingleMessage,
    Reason,
    ReasonCondition,
    Role,
    Senders,
    build_jingle,
    parse_jingle,
)
from jet_trio._plugins.builtin_ciphers import AESGCMCipher
from jet_trio._transfer.description import (
    Checksum,
    FileDescription,
    FileTransferError,
    build_checksum,
    build_description,
)
from jet_trio._transfer.hashes import Hash
from jet_trio._transfer.reasons import REASON_ERRORS, cut_short, error_for, reason_for
from jet_trio._transfer.session import (
    KEEPS,
    MAX_BACKLOG,
    PHASES,
    AcceptDirect,
    ActivateProxy,
    AwaitActivated,
    FallBack,
    FileSession,
    Phase,
    ReportProgress,
    ReportResult,
    SessionStateError,
    Step,
    UsePicked,
    parse_offer,
    refusal_reason,
)
from jet_trio._transfer.types import (
    EncryptionFailed,
    IntegrityError,
    TransferCancelled,
    TransferDeclined,
    TransferError,
    TransferTimeout,
    TransportFailed,
)
from jet_trio._transports.ibb import IBBTransport
from jet_trio._transports.ibb import build_transport as build_ibb
from jet_trio._transports.s5b import Activated, Candidate, ProxyError, S5BTransport, priority
from jet_trio._transports.s5b import build_transport as build_s5b
from jet_trio._transports.socks5 import dstaddr
from jet_trio._xmpp.ns import CIPHER_AES256_GCM

ALICE = JID("alice@example.org/a")
BOB = JID("bob@example.org/b")
PROXY = JID("proxy.example.org")
A = JingleAction
SHA = Hash("sha-256", bytes(32))
FILE = FileDescription(name="f.bin", size=1000, hashes=(SHA,))


def candidate(cid: str, owner: JID, *, type: str = "direct", pref: int = 0) -> Candidate:
    return Candidate(cid, "127.0.0.1", 1080, owner, type, priority(type, pref))  # type: ignore[arg-type]


def s5b(sid: str, me: JID, peer: JID, *cands: Candidate) -> etree._Element:
    return build_s5b(S5BTransport(sid, dstaddr(sid, me, peer), candidates=cands))


@dataclass
class Wire:
    """Alice (initiator) and Bob (responder), each a FileSession; messages go through XML."""

    alice: FileSession
    bob: FileSession

    def to_bob(self, msg: JingleMessage) -> None:
        self._carry(msg, self.bob, ALICE)

    def to_alice(self, msg: JingleMessage) -> None:
        self._carry(msg, self.alice, BOB)

    @staticmethod
    def _carry(msg: JingleMessage, to: FileSession, sender: JID) -> None:
        parsed = parse_jingle(etree.fromstring(etree.tostring(build_jingle(msg))), sender)
        assert to.refusal(parsed) is None
        assert to.jingle.receive(parsed) is None
        assert to.receive(parsed)


def offered(
    transport: str = "s5b",
    alice_cands: tuple[Candidate, ...] = (),
    bob_cands: tuple[Candidate, ...] = (),
    security: etree._Element | None = None,
) -> tuple[Wire, etree._Element, etree._Element]:
    """Alice offered FILE, Bob accepted: the wire, Alice's and Bob's transport elements."""
    alice = FileSession(SessionRegistry(ALICE).create(BOB))
    if transport == "ibb":
        ours = build_ibb(IBBTransport("ibb-sid", 4096))
    else:
        ours = s5b("s5b-sid", ALICE, BOB, *alice_cands)
    init = alice.initiate(build_description(FILE), ours, security, request=False)
    wire_init = parse_jingle(etree.fromstring(etree.tostring(build_jingle(init))), ALICE)
    incoming = SessionRegistry(BOB).receive(wire_init, ALICE)
    assert incoming.error is None and incoming.session is not None
    bob = FileSession(incoming.session)
    offer = parse_offer(wire_init, lambda urn: None)
    theirs = offer.content.transport
    assert theirs is not None
    if transport == "ibb":
        bobs = bob.answer_ibb(theirs, 2048)
    else:
        bobs = s5b("s5b-sid", BOB, ALICE, *bob_cands)
    assert offer.content.description is not None
    wire = Wire(alice, bob)
    wire.to_alice(bob.accept(offer.content, offer.content.description, bobs))
    got = alice.next_message(A.SESSION_ACCEPT)
    assert got is not None
    assert etree.tostring(alice.accepted(got)) == etree.tostring(bobs)
    return wire, ours, bobs


# -- the state table -------------------------------------------------------------------------


def test_every_phase_is_in_the_table_and_ended_absorbs() -> None:
    assert set(KEEPS) == set(Phase)
    assert {p for p, _ in PHASES} == set(Phase)
    assert all(PHASES[(Phase.ENDED, s)] is Phase.ENDED for s in Step)
    assert all(PHASES[(p, Step.END)] is Phase.ENDED for p in Phase)


def test_a_step_the_phase_does_not_allow_is_refused() -> None:
    s = FileSession(SessionRegistry(ALICE).create(BOB))
    with pytest.raises(SessionStateError):
        s.step(Step.DATA)  # data before the offer was accepted
    s.step(Step.ACCEPTED)
    with pytest.raises(SessionStateError):
        s.step(Step.DATA_DONE)
    assert s.step(Step.DATA) is Phase.TRANSFERRING
    assert s.step(Step.DATA_DONE) is Phase.CLOSING
    assert s.step(Step.END) is Phase.ENDED
    assert s.step(Step.DATA) is Phase.ENDED


def test_s5b_then_ibb_fallback_phases() -> None:
    wire, _, _ = offered()
    for side in (wire.alice, wire.bob):
        assert side.phase is Phase.NEGOTIATING
        assert not side.data_phase


# -- offers ----------------------------------------------------------------------------------


def initiate(*contents: Content) -> JingleMessage:
    jingle = SessionRegistry(ALICE).create(BOB)
    msg = jingle.initiate(contents)
    return parse_jingle(etree.fromstring(etree.tostring(build_jingle(msg))), ALICE)


def content(
    file: FileDescription = FILE,
    *,
    senders: Senders = Senders.INITIATOR,
    transport: etree._Element | None = None,
    security: etree._Element | None = None,
    request: bool = False,
    description: etree._Element | None = None,
) -> Content:
    return Content(
        Role.INITIATOR,
        "c",
        senders,
        description if description is not None else build_description(file, request=request),
        transport if transport is not None else build_ibb(IBBTransport("i", 4096)),
        security,
    )


def test_a_valid_offer_and_request_parse() -> None:
    offer = parse_offer(initiate(content()), lambda urn: None)
    assert not offer.request and offer.file.size == 1000 and offer.security is None
    req = parse_offer(
        initiate(content(FileDescription(hashes=(SHA,)), senders=Senders.RESPONDER, request=True)),
        lambda urn: None,
    )
    assert req.request


@pytest.mark.parametrize(
    ("make", "reason", "text"),
    [
        (lambda: initiate(content(), content().__class__(Role.INITIATOR, "d", Senders.INITIATOR,
                                                          build_description(FILE),
                                                          build_ibb(IBBTransport("j", 4096)))),
         "unsupported-applications", "single-file"),
        (lambda: initiate(content(description=etree.Element("{urn:x}description"))),
         "unsupported-applications", "not a file transfer"),
        (lambda: initiate(content(senders=Senders.BOTH)), "unsupported-applications", "senders"),
        (lambda: initiate(content(FileDescription(name="x"), senders=Senders.RESPONDER,
                                  request=True)), "failed-application", "by hash"),
        (lambda: initiate(content(FileDescription(name="x", hashes=(SHA,)), request=True)),
         "failed-application", "no <size>"),
        (lambda: initiate(content(transport=etree.Element("{urn:x}transport"))),
         "unsupported-transports", "no supported transport"),
    ],
)  # fmt: skip
def test_offer_validation(make: object, reason: str, text: str) -> None:
    msg = make()  # type: ignore[operator]
    with pytest.raises(TransferError) as caught:
        parse_offer(msg, lambda urn: None)
    assert caught.value.reason == reason and text in str(caught.value)
    assert refusal_reason(caught.value) == reason


def test_an_unsafe_file_name_is_a_failed_application() -> None:
    bad = etree.fromstring(
        b"<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file>"
        b"<name>a</name><size>-1</size></file></description>"
    )
    with pytest.raises(FileTransferError) as caught:
        parse_offer(initiate(content(description=bad)), lambda urn: None)
    assert refusal_reason(caught.value) == "failed-application"


def test_an_offer_beyond_the_cipher_limit_is_refused_before_accepting() -> None:
    cipher = AESGCMCipher(32, CIPHER_AES256_GCM)
    security = build_security("c", cipher, etree.Element("{urn:x}envelope"))
    big = FileDescription(name="big", size=cipher.max_plaintext_size + 1, hashes=(SHA,))
    msg = initiate(content(big, security=security))
    with pytest.raises(TransferError, match="exceed") as caught:
        parse_offer(msg, lambda urn: cipher if urn == cipher.urn else None)
    assert caught.value.reason == "failed-application"
    # An unknown cipher is refused later, when the envelope is opened.
    assert parse_offer(msg, lambda urn: None).security is not None


# -- peer messages: kept, dropped, refused -------------------------------------------------


def test_setup_messages_are_kept_until_asked_for_others_dropped() -> None:
    wire, _, _ = offered(transport="ibb")
    bob = wire.bob
    wire.to_bob(wire.alice.jingle.info(None))  # a ping: nobody asks, dropped
    wire.to_bob(wire.alice.transport_info(build_ibb(IBBTransport("ibb-sid", 4096))))
    assert bob.next_message(A.TRANSPORT_REPLACE) is None
    assert bob.backlog() == 1  # the transport-info is kept, the ping is gone
    got = bob.next_message(A.TRANSPORT_INFO)
    assert got is not None and got.action is A.TRANSPORT_INFO
    assert bob.backlog() == 0


def test_once_data_flows_setup_messages_are_refused_and_others_not_kept() -> None:
    wire, _, _ = offered(transport="ibb")
    wire.bob.step(Step.DATA)
    late = wire.alice.transport_info(build_ibb(IBBTransport("ibb-sid", 4096)))
    refusal = wire.bob.refusal(late)
    assert refusal is not None and refusal.condition == "unexpected-request"
    wire.bob.receive(wire.alice.jingle.info(None))
    assert wire.bob.next_message(A.SESSION_TERMINATE) is None
    assert wire.bob.backlog() == 0


def test_the_backlog_is_bounded_but_a_terminate_always_gets_through() -> None:
    wire, _, _ = offered(transport="ibb")
    info = wire.alice.transport_info(build_ibb(IBBTransport("ibb-sid", 4096)))
    for _ in range(MAX_BACKLOG):
        assert wire.bob.refusal(info) is None
        wire.bob.receive(info)
    full = wire.bob.refusal(info)
    assert full is not None and full.condition == "resource-constraint"
    end = wire.alice.terminate(Reason(ReasonCondition.CANCEL))
    assert end is not None and wire.bob.refusal(end) is None


def test_checksum_is_taken_when_it_arrives() -> None:
    wire, _, _ = offered(transport="ibb")
    digest = Hash("sha-256", b"\x01" * 32)
    wire.to_bob(wire.alice.jingle.info(build_checksum(Checksum(Role.INITIATOR, "c", (digest,)))))
    assert wire.bob.has_checksum and wire.bob.checksum == (digest,)
    assert wire.bob.backlog() == 0


@pytest.mark.parametrize(
    ("condition", "cls"),
    [
        ("decline", TransferDeclined),
        ("busy", TransferDeclined),
        ("cancel", TransferCancelled),
        ("gone", TransferCancelled),
        ("timeout", TransferTimeout),
        ("security-error", EncryptionFailed),
        ("media-error", IntegrityError),
        ("failed-transport", TransportFailed),
        ("connectivity-error", TransportFailed),
        ("failed-application", TransferError),
    ],
)
def test_a_terminate_raises_its_reason_and_is_remembered(
    condition: str, cls: type[TransferError]
) -> None:
    wire, _, _ = offered(transport="ibb")
    end = wire.alice.terminate(Reason(ReasonCondition(condition), "why"))
    assert end is not None and wire.alice.phase is Phase.ENDED
    wire.to_bob(end)
    with pytest.raises(cls) as caught:
        wire.bob.next_message(A.TRANSPORT_INFO)
    assert type(caught.value) is cls and caught.value.reason == condition
    assert "why" in str(caught.value)
    with pytest.raises(cls):  # asked again: the same answer
        wire.bob.next_message(A.TRANSPORT_INFO)
    assert wire.bob.next_message(A.SESSION_TERMINATE) is not None
    assert wire.bob.phase is Phase.ENDED
    assert wire.bob.terminate(Reason(ReasonCondition.CANCEL)) is None  # nothing more to send


def test_a_message_before_the_terminate_is_still_returned() -> None:
    wire, _, _ = offered(transport="ibb")
    wire.to_bob(wire.alice.transport_info(build_ibb(IBBTransport("ibb-sid", 4096))))
    end = wire.alice.terminate(Reason(ReasonCondition.CANCEL))
    assert end is not None
    wire.to_bob(end)
    assert wire.bob.next_message(A.TRANSPORT_INFO) is not None
    with pytest.raises(TransferCancelled):
        wire.bob.next_message(A.TRANSPORT_INFO)


def test_a_closed_session_reports_the_service_closing() -> None:
    wire, _, _ = offered(transport="ibb")
    wire.bob.close()
    with pytest.raises(TransferCancelled, match="service closed"):
        wire.bob.next_message(A.TRANSPORT_INFO)
    assert not wire.bob.receive(wire.alice.jingle.info(None))


def test_success_is_checked() -> None:
    wire, _, _ = offered(transport="ibb")
    ok = wire.bob.terminate(Reason(ReasonCondition.SUCCESS))
    assert ok is not None
    wire.alice.check_success(ok)
    wire2, _, _ = offered(transport="ibb")
    bad = wire2.bob.terminate(Reason(ReasonCondition.MEDIA_ERROR))
    assert bad is not None
    with pytest.raises(IntegrityError):
        wire2.alice.check_success(bad)


# -- ending after a local error ------------------------------------------------------------


def test_a_local_error_ends_the_session_with_its_reason() -> None:
    wire, _, _ = offered(transport="ibb")
    ending = wire.alice.after_error(TransportFailed("broke", "connectivity-error"))
    assert ending.instead is None and ending.reason is not None
    assert ending.reason.condition is ReasonCondition.CONNECTIVITY_ERROR
    assert wire.alice.after_error(KeyboardInterrupt()).reason == Reason(ReasonCondition.CANCEL)
    disk = OSError(errno.ENOSPC, "No space left on device", "/home/x/secret/f.part")
    r = wire.alice.after_error(disk).reason
    assert r is not None and r.condition is ReasonCondition.FAILED_APPLICATION
    assert r.text == "local I/O error: No space left on device"


def test_a_consequence_of_the_peer_ending_first_raises_the_peers_reason() -> None:
    wire, _, _ = offered(transport="ibb")
    end = wire.bob.terminate(Reason(ReasonCondition.DECLINE, "no"))
    assert end is not None
    wire.to_alice(end)
    ending = wire.alice.after_error(JingleLocalError("session ENDED"))
    assert ending.reason is None and isinstance(ending.instead, TransferDeclined)
    # A real failure of ours is never replaced, and nothing is sent either (ended already).
    bad = wire.alice.after_error(IntegrityError("hash", "media-error"))
    assert bad.reason is None and bad.instead is None


def test_a_stream_cut_short_after_the_peer_ended_is_the_peers_reason() -> None:
    wire, _, _ = offered(transport="ibb")
    end = wire.alice.terminate(Reason(ReasonCondition.CANCEL))
    assert end is not None
    wire.to_bob(end)
    cut = EncryptionFailed("refused")
    cut.__cause__ = TruncatedStream("ended before the tag")
    assert isinstance(wire.bob.after_error(cut).instead, TransferCancelled)
    wrong_tag = EncryptionFailed("bad tag")
    assert wire.bob.after_error(wrong_tag).instead is None


def test_the_reason_table_goes_both_ways() -> None:
    for cond, cls in REASON_ERRORS.items():
        err = error_for(Reason(cond), "peer")
        assert type(err) is cls
        assert reason_for(err)[0] == cond.value
    assert reason_for(trio.Cancelled._create()) == ("cancel", None)
    assert type(error_for(None, "peer")) is TransferError


def test_a_local_io_error_tells_the_peer_no_path_of_this_machine() -> None:
    """The text of an OSError may be our own, naming a path (accept's "... already exists
    (pass overwrite=True ...)"): the peer gets only the system's text for its errno."""
    taken = FileExistsError(errno.EEXIST, "/home/bob/inbox/same.bin already exists (pass ...)")
    assert reason_for(taken) == (
        "failed-application",
        "local I/O error: File exists (the offered name already exists here)",
    )
    full = OSError(errno.ENOSPC, "No space left on device", "/home/bob/inbox/.part")
    assert reason_for(full) == ("failed-application", "local I/O error: No space left on device")
    assert reason_for(OSError("odd")) == ("failed-application", "local I/O error: OSError")


# -- S5B: candidates, nomination, activation -----------------------------------------------


def exchange(
    alice_cands: tuple[Candidate, ...],
    bob_cands: tuple[Candidate, ...],
    alice_picks: Candidate | None,
    bob_picks: Candidate | None,
    *,
    crossing: bool = True,
) -> tuple[Wire, object, object]:
    """Both sides connect and report (crossing: both reports sent before either is read)."""
    wire, ours, theirs = offered("s5b", alice_cands, bob_cands)
    ax = wire.alice.s5b(ours, theirs)
    bx = wire.bob.s5b(theirs, ours)
    a_connect, b_connect = ax.connect(), bx.connect()
    assert (a_connect is not None) == bool(bob_cands)
    assert (b_connect is not None) == bool(alice_cands)
    if b_connect is not None:
        assert b_connect.dstaddr == dstaddr("s5b-sid", ALICE, BOB)
    a_report, b_report = ax.connected(alice_picks), bx.connected(bob_picks)
    if not crossing:  # Bob reads Alice's report before sending his
        wire.to_bob(a_report)
    wire.to_alice(b_report)
    if crossing:
        wire.to_bob(a_report)
    for x, side in ((ax, wire.alice), (bx, wire.bob)):
        msg = side.next_message(A.TRANSPORT_INFO)
        assert msg is not None and x.take(msg)
    return wire, ax.decide(), bx.decide()


A1 = candidate("a1", ALICE, pref=5)
B1 = candidate("b1", BOB, pref=5)
AP = candidate("ap", PROXY, type="proxy")
BP = candidate("bp", PROXY, type="proxy")


@pytest.mark.parametrize("crossing", [True, False])
def test_both_candidates_used_higher_priority_wins_on_both_sides(crossing: bool) -> None:
    hi = candidate("b-hi", BOB, pref=9)
    _, a, b = exchange((A1,), (hi,), hi, A1, crossing=crossing)
    # Alice connected to Bob's higher one: she uses her connection, Bob takes it.
    assert a == UsePicked(hi)
    assert isinstance(b, AcceptDirect) and b.candidate == hi
    assert b.dstaddr == dstaddr("s5b-sid", BOB, ALICE)


def test_a_tie_goes_to_the_candidate_the_initiator_offered() -> None:
    """Equal priorities: both sides pick the same one (the deployed rule, Dino and
    Conversations), never each its own, which would leave each waiting for the other."""
    _, a, b = exchange((A1,), (B1,), B1, A1)
    assert isinstance(a, AcceptDirect) and a.candidate == A1
    assert b == UsePicked(A1)


def test_one_side_connects_only() -> None:
    _, a, b = exchange((A1,), (B1,), None, A1)
    assert isinstance(a, AcceptDirect) and b == UsePicked(A1)
    _, a, b = exchange((A1,), (B1,), B1, None)
    assert a == UsePicked(B1) and isinstance(b, AcceptDirect)


def test_no_candidate_on_either_side_falls_back_to_ibb() -> None:
    wire, a, b = exchange((A1,), (B1,), None, None)
    assert a == FallBack() and b == FallBack()
    replace, offer = wire.alice.replace_with_ibb(8192)
    assert wire.alice.phase is Phase.REPLACING
    wire.to_bob(replace)
    got = wire.bob.next_message(A.TRANSPORT_REPLACE)
    assert got is not None
    agreed, accept = wire.bob.replace_received(got, 4096)
    assert agreed == IBBTransport(offer.sid, 4096) and wire.bob.phase is Phase.REPLACING
    wire.to_alice(accept)
    answer = wire.alice.next_message(A.TRANSPORT_ACCEPT, A.TRANSPORT_REJECT)
    assert answer is not None
    assert wire.alice.replace_answered(answer, offer) == agreed
    for side in (wire.alice, wire.bob):
        assert side.step(Step.DATA) is Phase.TRANSFERRING


def test_no_candidates_offered_at_all_falls_back() -> None:
    _, a, b = exchange((), (), None, None)
    assert a == FallBack() and b == FallBack()


def test_a_rejected_fallback_or_a_raised_block_size_fails_the_transport() -> None:
    wire, _, _ = exchange((A1,), (B1,), None, None)
    replace, offer = wire.alice.replace_with_ibb(4096)
    wire.to_bob(replace)
    assert wire.bob.next_message(A.TRANSPORT_REPLACE) is not None
    raised = wire.bob.jingle.transport_accept(
        [wire.bob._content(build_ibb(IBBTransport(offer.sid, 65535)))]
    )
    wire.to_alice(raised)
    answer = wire.alice.next_message(A.TRANSPORT_ACCEPT, A.TRANSPORT_REJECT)
    assert answer is not None
    with pytest.raises(TransportFailed, match="raised the IBB block size"):
        wire.alice.replace_answered(answer, offer)
    wire2, _, _ = exchange((A1,), (B1,), None, None)
    replace2, offer2 = wire2.alice.replace_with_ibb(4096)
    wire2.to_bob(replace2)
    assert wire2.bob.next_message(A.TRANSPORT_REPLACE) is not None
    wire2.to_alice(wire2.bob.jingle.transport_reject([wire2.bob._content(replace2.contents[0].transport)]))  # type: ignore[arg-type]  # fmt: skip
    answer2 = wire2.alice.next_message(A.TRANSPORT_ACCEPT, A.TRANSPORT_REJECT)
    assert answer2 is not None
    with pytest.raises(TransportFailed, match="refused the IBB fallback"):
        wire2.alice.replace_answered(answer2, offer2)


def test_terminate_racing_transport_replace() -> None:
    """Alice replaces the failed transport while Bob gives up and terminates: Alice waiting
    for the transport-accept gets Bob's reason, and sends no terminate of her own."""
    wire, _, _ = exchange((A1,), (B1,), None, None)
    replace, _ = wire.alice.replace_with_ibb(4096)
    end = wire.bob.terminate(Reason(ReasonCondition.FAILED_TRANSPORT, "giving up"))
    assert end is not None
    wire.to_alice(end)  # crossed: Bob's terminate arrives while Alice's replace is on its way
    assert wire.bob.jingle.receive(replace) is not None  # Bob has ended: refused
    with pytest.raises(TransportFailed, match="giving up") as caught:
        wire.alice.next_message(A.TRANSPORT_ACCEPT, A.TRANSPORT_REJECT)
    ending = wire.alice.after_error(caught.value)
    assert ending.reason is None
    assert wire.alice.jingle.state is SessionState.ENDED


def test_the_peer_using_a_candidate_we_never_offered_fails_the_transport() -> None:
    wire, ours, theirs = offered("s5b", (A1,), (B1,))
    ax = wire.alice.s5b(ours, theirs)
    liar = candidate("never-offered", ALICE)
    wire.to_alice(wire.bob.s5b(theirs, ours).connected(liar))
    ax.connected(None)
    msg = wire.alice.next_message(A.TRANSPORT_INFO)
    assert msg is not None and ax.take(msg)
    with pytest.raises(TransportFailed, match="never offered") as caught:
        ax.decide()
    assert caught.value.reason == "failed-transport"


def test_proxy_nominated_its_offerer_activates_and_the_other_waits() -> None:
    wire, ours, theirs = offered("s5b", (AP,), (B1,))
    ax, bx = wire.alice.s5b(ours, theirs), wire.bob.s5b(theirs, ours)
    wire.to_alice(bx.connected(AP))
    wire.to_bob(ax.connected(None))
    for x, side in ((ax, wire.alice), (bx, wire.bob)):
        msg = side.next_message(A.TRANSPORT_INFO)
        assert msg is not None and x.take(msg)
    a, b = ax.decide(), bx.decide()
    assert a == ActivateProxy(AP, dstaddr("s5b-sid", ALICE, BOB), "s5b-sid")
    assert b == AwaitActivated(AP)
    wire.to_bob(ax.activated(AP))
    msg = wire.bob.next_message(A.TRANSPORT_INFO)
    assert msg is not None and bx.take_activated(msg)


def test_a_proxy_error_fails_the_transport() -> None:
    wire, ours, theirs = offered("s5b", (AP,), (B1,))
    bx = wire.bob.s5b(theirs, ours)
    err = build_s5b(S5BTransport("s5b-sid", info=ProxyError()), include_mode=False)
    wire.to_bob(wire.alice.transport_info(err))
    msg = wire.bob.next_message(A.TRANSPORT_INFO)
    assert msg is not None
    with pytest.raises(TransportFailed, match="proxy error"):
        bx.take(msg)


def test_an_early_activated_is_ignored_while_waiting_for_the_candidate_report() -> None:
    wire, ours, theirs = offered("s5b", (A1,), (B1,))
    bx = wire.bob.s5b(theirs, ours)
    early = build_s5b(S5BTransport("s5b-sid", info=Activated("x")), include_mode=False)
    wire.to_bob(wire.alice.transport_info(early))
    msg = wire.bob.next_message(A.TRANSPORT_INFO)
    assert msg is not None and not bx.take(msg)


def test_a_session_accept_raising_the_ibb_block_size_fails_the_transport() -> None:
    """XEP-0261: the responder may lower the block size, never raise it; the session-accept
    is checked like the transport-accept of a fallback (one check for both)."""
    alice = FileSession(SessionRegistry(ALICE).create(BOB))
    ours = build_ibb(IBBTransport("ibb-sid", 4096))
    init = alice.initiate(build_description(FILE), ours, None, request=False)
    wire_init = parse_jingle(etree.fromstring(etree.tostring(build_jingle(init))), ALICE)
    incoming = SessionRegistry(BOB).receive(wire_init, ALICE)
    assert incoming.session is not None
    bob = FileSession(incoming.session)
    offer = parse_offer(wire_init, lambda urn: None)
    assert offer.content.description is not None
    raised = build_ibb(IBBTransport("ibb-sid", 65535))
    Wire(alice, bob).to_alice(bob.accept(offer.content, offer.content.description, raised))
    got = alice.next_message(A.SESSION_ACCEPT)
    assert got is not None
    with pytest.raises(TransportFailed, match="raised the IBB block size from 4096 to 65535"):
        alice.accepted(got)


def test_progress_is_reported_only_while_data_flows_forward_and_once() -> None:
    wire, _, _ = offered("ibb")
    alice = wire.alice
    assert alice.data_moved(10, 100) is None  # negotiating: nothing flows yet
    alice.step(Step.DATA)
    assert alice.data_moved(10, 100) == ReportProgress(10, 100)
    assert alice.data_moved(10, 100) is None  # the same count again
    assert alice.data_moved(5, 100) is None  # backwards
    assert alice.data_moved(101, 100) is None  # beyond the total
    assert alice.data_moved(100, 100) == ReportProgress(100, 100)
    alice.step(Step.DATA_DONE)
    assert alice.data_moved(100, 100) is None


RESULT = {
    "name": "f.bin",
    "size": 3,
    "sha256": "00" * 32,
    "transport": "ibb",
    "envelope": None,
    "cipher": None,
    "seconds": 0.5,
    "path": Path("f.bin"),
    "wire_bytes": 3,
    "verified": True,
    "choice": "not encrypted: encrypt=None",
}


def test_a_result_only_for_a_transfer_that_succeeded() -> None:
    wire, _, _ = offered("ibb")
    alice, bob = wire.alice, wire.bob
    with pytest.raises(SessionStateError, match=r"did not succeed \(send, phase negotiating\)"):
        alice.result("send", **RESULT)  # type: ignore[arg-type]
    for side in (alice, bob):
        side.step(Step.DATA)
    with pytest.raises(SessionStateError, match="did not succeed"):
        bob.result("receive", **RESULT)  # type: ignore[arg-type]  # not every byte yet
    for side in (alice, bob):
        side.step(Step.DATA_DONE)
    with pytest.raises(SessionStateError, match=r"send, phase closing"):
        alice.result("send", **RESULT)  # type: ignore[arg-type]  # the receiver has not said
    end = bob.terminate(Reason(ReasonCondition.SUCCESS))
    assert end is not None
    report = bob.result("receive", **RESULT)  # type: ignore[arg-type]
    assert isinstance(report, ReportResult) and report.result.peer == ALICE
    assert report.result.direction == "receive" and report.result.hash_verified
    wire.to_alice(end)
    assert alice.next_message(A.SESSION_TERMINATE) is not None
    assert alice.result("send", **RESULT).result.peer == BOB  # type: ignore[arg-type]


def test_no_result_after_a_failed_ending() -> None:
    wire, _, _ = offered("ibb")
    for side in (wire.alice, wire.bob):
        side.step(Step.DATA)
        side.step(Step.DATA_DONE)
    end = wire.bob.terminate(Reason(ReasonCondition.MEDIA_ERROR))  # the hash did not match
    assert end is not None
    with pytest.raises(SessionStateError, match="receive, phase ended"):
        wire.bob.result("receive", **RESULT)  # type: ignore[arg-type]
    wire.to_alice(end)
    with pytest.raises(IntegrityError):
        wire.alice.next_message()
    with pytest.raises(SessionStateError, match="send, phase ended"):
        wire.alice.result("send", **RESULT)  # type: ignore[arg-type]


def test_a_receiver_with_every_byte_has_its_result_whatever_the_peer_said_after() -> None:
    """The sender cancelled after its last byte, while the receiver verified: the file is
    whole and verified, the receiver reports it (the sender's end is moot)."""
    wire, _, _ = offered("ibb")
    for side in (wire.alice, wire.bob):
        side.step(Step.DATA)
    wire.alice.step(Step.DATA_DONE)
    cancel = wire.alice.terminate(Reason(ReasonCondition.CANCEL))
    assert cancel is not None
    wire.to_bob(cancel)
    assert wire.bob.ended_by_peer() is not None
    wire.bob.step(Step.DATA_DONE)
    assert wire.bob.terminate(Reason(ReasonCondition.SUCCESS)) is None  # already over
    assert wire.bob.result("receive", **RESULT).result.direction == "receive"  # type: ignore[arg-type]


def test_a_stream_cut_short_as_the_peer_went_away_is_cut_short() -> None:
    """A sender killed mid-file: the receiver sees its stream end early and, at once, the
    peer's "gone" (or a reset connection). That is still a stream cut short, not bad data:
    the partial is kept. Another security error beside it is bad data."""
    early = TruncatedStream("the transport ended 100 bytes early")
    gone = TransferError("the peer went offline", "gone")
    cut = EncryptionFailed("refused")
    cut.__cause__ = BaseExceptionGroup("receive", [early, gone, trio.BrokenResourceError()])
    assert cut_short(cut)
    bad = EncryptionFailed("refused")
    bad.__cause__ = BaseExceptionGroup("receive", [early, EncryptionFailed("bad tag")])
    assert not cut_short(bad)
    alone = EncryptionFailed("refused")
    alone.__cause__ = BaseExceptionGroup("receive", [gone])
    assert not cut_short(alone)
