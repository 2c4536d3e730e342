"""The WebRTC data channel in the sans-IO file-transfer session: the transport choice, the
phases, the trickled candidates, the fallback after a failed connection, and whole sessions in
Conversations' dialect (both roles), without sockets or aiortc."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from lxml import etree

from jet_trio import JID
from jet_trio._jingle.machine import SessionRegistry
from jet_trio._jingle.message import (
    JingleAction,
    JingleMessage,
    Reason,
    ReasonCondition,
    build_jingle,
    parse_jingle,
)
from jet_trio._transfer.description import FileDescription, build_description
from jet_trio._transfer.hashes import Hash
from jet_trio._transfer.session import (
    FALLBACK_OF,
    MAX_TRICKLED,
    PHASES,
    PREFERENCE,
    FallBack,
    FileSession,
    Phase,
    SessionStateError,
    Step,
    TransportKind,
    WebRTCExchange,
    choose_transport,
    kind_of,
    parse_offer,
)
from jet_trio._transfer.types import EncryptionFailed, TransferError, TransportFailed
from jet_trio._transports import webrtc_element as we
from jet_trio._transports.ibb import IBBTransport
from jet_trio._transports.webrtc import DtlsFingerprintMismatch, IceFailed

FIXTURES = Path(__file__).parent.parent / "fixtures" / "webrtc"
ALICE = JID("alice@example.org/a")
BOB = JID("bob@example.org/b")
CAROL = JID("carol@example.org/Conversations.x1")
A = JingleAction
FILE = FileDescription(name="f.bin", size=1000, hashes=(Hash("sha-256", bytes(32)),))
WEBRTC = we.WEBRTC_DATACHANNEL_NS
ALL: frozenset[TransportKind] = frozenset({"webrtc", "s5b", "ibb"})
S5B_IBB: frozenset[TransportKind] = frozenset({"s5b", "ibb"})
RELAY_ONLY: frozenset[TransportKind] = frozenset({"webrtc", "ibb"})


def info(
    ufrag: str, *cands: we.IceCandidate, setup: we.Setup = "actpass"
) -> we.WebRTCTransportInfo:
    fp = we.Fingerprint("sha-256", ":".join(["AB"] * 32), setup)
    return we.WebRTCTransportInfo(ufrag, "p" * 22, (fp,), candidates=cands)


def cand(n: int, kind: we.CandidateType = "host") -> we.IceCandidate:
    return we.IceCandidate(str(n), 1, f"10.44.1.{n}", 40000 + n, 2130706431 - n, kind, id=f"c{n}")


def carry(msg: JingleMessage, to: FileSession, sender: JID) -> None:
    parsed = parse_jingle(etree.fromstring(etree.tostring(build_jingle(msg))), sender)
    assert to.refusal(parsed) is None
    assert to.jingle.receive(parsed) is None
    assert to.receive(parsed)


def offered(local: we.WebRTCTransportInfo) -> tuple[FileSession, FileSession, JingleMessage]:
    """Alice offered FILE over the data channel; Bob has the session-initiate."""
    alice = FileSession(SessionRegistry(ALICE).create(BOB))
    init = alice.initiate(
        build_description(FILE), WebRTCExchange.element(local), None, request=False
    )
    wire = parse_jingle(etree.fromstring(etree.tostring(build_jingle(init))), ALICE)
    incoming = SessionRegistry(BOB).receive(wire, ALICE)
    assert incoming.error is None and incoming.session is not None
    return alice, FileSession(incoming.session), wire


# -- the transport choice ---------------------------------------------------------------------


def test_preference_is_data_channel_then_s5b_then_ibb() -> None:
    assert PREFERENCE == ("webrtc", "s5b", "ibb")
    assert dict(FALLBACK_OF) == {"webrtc": "ibb", "s5b": "ibb", "ibb": None}
    both = lambda feature: True  # noqa: E731
    none = lambda feature: False  # noqa: E731
    assert choose_transport("auto", ALL, both) == "webrtc"
    assert choose_transport("auto", ALL, lambda f: f != WEBRTC) == "s5b"  # peer lacks it
    assert choose_transport("auto", S5B_IBB, both) == "s5b"  # we have it off
    assert choose_transport("auto", RELAY_ONLY, none) == "ibb"  # relay-only: no S5B
    assert choose_transport("ibb", ALL, both) == "ibb"
    assert choose_transport("webrtc", ALL, both) == "webrtc"
    with pytest.raises(TransportFailed, match="does not advertise") as caught:
        choose_transport("webrtc", ALL, none)
    assert caught.value.reason == "unsupported-transports"
    with pytest.raises(TransportFailed, match="not enabled"):
        choose_transport("webrtc", S5B_IBB, both)
    with pytest.raises(ValueError, match="unknown transport"):
        choose_transport("tcp", ALL, both)


def test_an_offer_over_the_data_channel_is_refused_unless_enabled() -> None:
    _, _, wire = offered(info("abcd"))
    with pytest.raises(TransferError, match="no supported transport") as caught:
        parse_offer(wire, lambda urn: None)  # the default: S5B and IBB only
    assert caught.value.reason == "unsupported-transports"
    offer = parse_offer(wire, lambda urn: None, ALL)
    assert offer.content.transport is not None and kind_of(offer.content.transport) == "webrtc"


# -- the phases -------------------------------------------------------------------------------


def test_data_channel_phases() -> None:
    s = FileSession(SessionRegistry(ALICE).create(BOB))
    with pytest.raises(SessionStateError):
        s.step(Step.CONNECT)  # not before the answer
    assert s.step(Step.ACCEPTED) is Phase.NEGOTIATING
    assert s.step(Step.CONNECT) is Phase.CONNECTING
    assert not s.data_phase
    assert PHASES[(Phase.CONNECTING, Step.DATA)] is Phase.TRANSFERRING
    assert s.step(Step.FALLBACK) is Phase.REPLACING
    with pytest.raises(SessionStateError):
        s.step(Step.FALLBACK)  # replaced once, by IBB: no second fallback
    with pytest.raises(SessionStateError):
        s.step(Step.CONNECT)


# -- a session over the data channel ----------------------------------------------------------


def test_offer_trickle_accept_trickle_both_ways() -> None:
    ours = info("abcd", cand(2), cand(3, "srflx"))
    alice, bob, wire = offered(ours)
    assert alice.transport == bob.transport == "webrtc"
    offer = parse_offer(wire, lambda urn: None, ALL)
    assert offer.content.transport is not None
    sent = offer.content.transport.find(f"{{{we.ICE_UDP_NS}}}transport")
    assert sent is not None and sent.find(f"{{{we.ICE_UDP_NS}}}candidate") is None  # trickled
    # Alice trickles right after her offer: Bob holds them while his user decides.
    trickle = alice.trickle(ours)
    assert len(trickle) == 2
    for msg in trickle:
        carry(msg, bob, ALICE)
    assert bob.phase is Phase.OFFERED and bob.trickled == 2 and bob.backlog() == 0
    answer = info("wxyz", cand(7), setup="active")
    assert offer.content.description is not None
    accept = bob.accept(offer.content, offer.content.description, WebRTCExchange.element(answer))
    at_bob = bob.webrtc(offer.content.transport)
    assert at_bob.remote == replace(ours, candidates=())
    assert at_bob.candidates() == ours.candidates
    assert at_bob.candidates() == ()  # handed over once
    at_bob.connecting()
    assert bob.phase.value == "connecting"
    carry(accept, alice, BOB)
    got = alice.next_message(A.SESSION_ACCEPT)
    assert got is not None
    at_alice = alice.webrtc(alice.accepted(got))
    assert at_alice.remote.setup == "active"
    for msg in bob.trickle(answer):
        carry(msg, alice, BOB)
    at_alice.connecting()
    assert at_alice.candidates() == (cand(7),)
    assert alice.backlog() == 0  # trickle is not kept with the other messages
    for side in (alice, bob):
        assert side.step(Step.DATA) is Phase.TRANSFERRING


def test_trickle_is_bounded_per_session() -> None:
    alice, bob, _ = offered(info("abcd"))
    flood = info("abcd", *(cand(n) for n in range(1, 31)))
    sent = 0
    while sent + 30 <= MAX_TRICKLED:
        msg = alice.transport_info(we.build_transport(flood, with_fingerprint=False))
        carry(msg, bob, ALICE)
        sent += 30
    over = alice.transport_info(we.build_transport(flood, with_fingerprint=False))
    parsed = parse_jingle(etree.fromstring(etree.tostring(build_jingle(over))), ALICE)
    refused = bob.refusal(parsed)
    assert refused is not None and refused.condition == "resource-constraint"
    assert bob.trickled == sent


def test_a_malformed_or_foreign_candidate_fails_the_transport() -> None:
    ours = info("abcd")
    alice, bob, wire = offered(ours)
    other = alice.transport_info(
        we.build_transport(info("zzzz", cand(4)), with_fingerprint=False)
    )  # another ICE generation
    carry(other, bob, ALICE)
    offer = parse_offer(wire, lambda urn: None, ALL)
    assert offer.content.transport is not None
    with pytest.raises(TransportFailed, match="malformed candidate") as caught:
        bob.webrtc(offer.content.transport).candidates()
    assert caught.value.reason == "failed-transport"


def test_a_malformed_answer_fails_the_transport() -> None:
    bad = WebRTCExchange.element(info("abcd"))
    for fp in bad.iter(f"{{{we.DTLS_NS}}}fingerprint"):
        fp.getparent().remove(fp)  # type: ignore[union-attr]
    with pytest.raises(TransportFailed, match="malformed") as caught:
        WebRTCExchange.parse(bad)
    assert caught.value.reason == "failed-transport"


def test_failed_connection_falls_back_to_ibb_and_late_trickle_is_dropped() -> None:
    ours = info("abcd")
    alice, bob, wire = offered(ours)
    offer = parse_offer(wire, lambda urn: None, ALL)
    assert offer.content.transport is not None and offer.content.description is not None
    accept = bob.accept(
        offer.content, offer.content.description, WebRTCExchange.element(info("wxyz"))
    )
    carry(accept, alice, BOB)
    got = alice.next_message(A.SESSION_ACCEPT)
    assert got is not None
    exchange = alice.webrtc(alice.accepted(got))
    exchange.connecting()
    assert exchange.failed(IceFailed("no pair")) == FallBack()
    replace_msg, ibb = alice.replace_with_ibb(4096)
    assert alice.phase is Phase.REPLACING and alice.transport == "ibb"
    # Bob's candidates still on their way: answered (no error to the peer) and dropped.
    late = bob.trickle(info("wxyz", cand(9)))[0]
    carry(late, alice, BOB)
    assert alice.backlog() == 0 and exchange.candidates() == ()
    assert not bob.pending(A.TRANSPORT_REPLACE)
    carry(replace_msg, bob, ALICE)
    assert bob.pending(A.TRANSPORT_REPLACE)  # the responder stops connecting
    got = bob.next_message(A.TRANSPORT_REPLACE)
    assert got is not None
    agreed, accept_ibb = bob.replace_received(got, 4096)
    assert agreed == IBBTransport(ibb.sid, 4096) and bob.transport == "ibb"
    carry(accept_ibb, alice, BOB)
    answer = alice.next_message(A.TRANSPORT_ACCEPT, A.TRANSPORT_REJECT)
    assert answer is not None and alice.replace_answered(answer, ibb) == agreed
    for side in (alice, bob):
        assert side.step(Step.DATA) is Phase.TRANSFERRING
    # Once data flows a late candidate is still answered and dropped, not refused.
    carry(bob.trickle(info("wxyz", cand(10)))[0], alice, BOB)
    assert alice.backlog() == 0


def test_a_dtls_failure_never_falls_back() -> None:
    alice, _, _ = offered(info("abcd"))
    exchange = WebRTCExchange(alice, info("wxyz"))
    with pytest.raises(EncryptionFailed, match="man in the middle") as caught:
        exchange.failed(DtlsFingerprintMismatch("certificate differs"))
    assert caught.value.reason == "security-error"
    assert isinstance(caught.value.__cause__, DtlsFingerprintMismatch)


def test_a_peer_that_advertised_then_refuses_the_data_channel() -> None:
    """Bob advertised the transport but terminates the offer with unsupported-transports:
    Alice waiting for the answer gets a typed TransportFailed (the wait itself is bounded by
    the driver)."""
    alice, bob, _ = offered(info("abcd"))
    end = bob.terminate(Reason(ReasonCondition.UNSUPPORTED_TRANSPORTS, "no WebRTC here"))
    assert end is not None
    carry(end, alice, BOB)
    with pytest.raises(TransportFailed, match="no WebRTC here") as caught:
        alice.next_message(A.SESSION_ACCEPT)
    assert caught.value.reason == "unsupported-transports"


# -- whole sessions in Conversations' dialect ------------------------------------------------


def session_fixture(name: str, sid: str | None = None) -> list[etree._Element]:
    text = (FIXTURES / name).read_text()
    if sid is not None:
        text = text.replace('sid="SID"', f'sid="{sid}"')
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True)
    root = etree.fromstring(text.encode(), parser)
    return [iq for iq in root if isinstance(iq.tag, str)]


def from_iq(iq: etree._Element) -> JingleMessage:
    jingle = iq[0]
    return parse_jingle(jingle, JID(iq.get("from") or ""))


def test_conversations_initiates_jet_trio_answers() -> None:
    """Conversations offers a file over the data channel (fixture: its session-initiate, two
    trickled candidates and its checksum); jet-trio, the responder, takes every stanza and
    answers with what Conversations reads: a session-accept of content "0" with an answer
    carrying sctp-port, max-message-size, ufrag, pwd and the fingerprint but no candidate,
    candidates in transport-info with the wrapper only, and session-terminate success."""
    initiate, *rest = session_fixture("conversations-session-initiator.xml")
    msg = from_iq(initiate)
    incoming = SessionRegistry(BOB).receive(msg, CAROL)
    assert incoming.error is None and incoming.session is not None
    bob = FileSession(incoming.session)
    offer = parse_offer(msg, lambda urn: None, ALL)
    assert offer.content.name == "0" and offer.file.name == "photo.jpg"
    assert offer.content.transport is not None and bob.transport == "webrtc"
    for iq in rest[:2]:  # the candidates arrive before the user accepted
        m = from_iq(iq)
        assert bob.refusal(m) is None and bob.jingle.receive(m) is None and bob.receive(m)
    ours = info("wxyz", cand(7), setup="active")
    assert offer.content.description is not None
    accept = bob.accept(offer.content, offer.content.description, WebRTCExchange.element(ours))
    exchange = bob.webrtc(offer.content.transport)
    assert exchange.remote.ufrag == "8hhy" and exchange.remote.sctp_port == 5000
    assert [c.type for c in exchange.candidates()] == ["host", "srflx"]
    exchange.connecting()
    # What Conversations reads from our session-accept (FileTransferContentMap.of,
    # WebRTCDataChannelTransportInfo, IceUdpTransportInfo): the offer's content, our answer.
    el = build_jingle(accept)
    assert el.get("action") == "session-accept" and el.get("sid") == msg.sid
    (content,) = el.findall("{urn:xmpp:jingle:1}content")
    assert (content.get("creator"), content.get("name"), content.get("senders")) == (
        "initiator", "0", "initiator",
    )  # fmt: skip
    transport = content.find(f"{{{WEBRTC}}}transport")
    assert transport is not None
    assert transport.get("sctp-port") == "5000" and transport.get("max-message-size") == "65536"
    ice = transport.find(f"{{{we.ICE_UDP_NS}}}transport")
    assert ice is not None and (ice.get("ufrag"), ice.get("pwd")) == ("wxyz", "p" * 22)
    fp = ice.find(f"{{{we.DTLS_NS}}}fingerprint")
    assert fp is not None and fp.get("hash") == "sha-256" and fp.get("setup") == "active"
    assert ice.find(f"{{{we.ICE_UDP_NS}}}candidate") is None
    (trickle,) = [build_jingle(m) for m in bob.trickle(ours)]
    assert etree.tostring(trickle, method="c14n") == etree.tostring(
        etree.fromstring(
            f'<jingle xmlns="urn:xmpp:jingle:1" action="transport-info" sid="{msg.sid}">'
            '<content creator="initiator" name="0">'
            f'<transport xmlns="{WEBRTC}" sctp-port="5000" max-message-size="65536">'
            f'<transport xmlns="{we.ICE_UDP_NS}" ufrag="wxyz" pwd="{"p" * 22}">'
            '<candidate component="1" foundation="7" generation="0" id="c7" ip="10.44.1.7"'
            ' port="40007" priority="2130706424" protocol="udp" type="host"/>'
            "</transport></transport></content></jingle>"
        ),
        method="c14n",
    )
    bob.step(Step.DATA)
    bob.step(Step.DATA_DONE)
    checksum = from_iq(rest[2])
    assert bob.refusal(checksum) is None and bob.jingle.receive(checksum) is None
    assert bob.receive(checksum) and bob.has_checksum
    end = bob.terminate(Reason(ReasonCondition.SUCCESS))
    assert end is not None
    assert etree.tostring(build_jingle(end), method="c14n") == etree.tostring(
        etree.fromstring(
            f'<jingle xmlns="urn:xmpp:jingle:1" action="session-terminate" sid="{msg.sid}">'
            "<reason><success/></reason></jingle>"
        ),
        method="c14n",
    )


def test_jet_trio_initiates_conversations_answers() -> None:
    """jet-trio offers over the data channel; Conversations' answer (fixture: session-accept
    with its BUNDLE group, two trickled candidates, session-info received, session-terminate
    success) is taken stanza by stanza; jet-trio's offer is what Conversations reads."""
    ours = info("abcd", cand(2))
    alice = FileSession(SessionRegistry(ALICE).create(CAROL))
    init = alice.initiate(
        build_description(FILE), WebRTCExchange.element(ours), None, request=False
    )
    el = build_jingle(init)
    (content,) = el.findall("{urn:xmpp:jingle:1}content")
    assert (content.get("creator"), content.get("senders")) == ("initiator", "initiator")
    transport = content.find(f"{{{WEBRTC}}}transport")
    assert transport is not None
    parsed = we.parse_transport(transport)  # the fingerprint (actpass), no candidate
    assert parsed.setup == "actpass" and parsed.candidates == () and "trickle" in parsed.ice_options
    accept, *rest = session_fixture("conversations-session-responder.xml", alice.sid)
    got = from_iq(accept)
    assert alice.refusal(got) is None and alice.jingle.receive(got) is None and alice.receive(got)
    answer = alice.next_message(A.SESSION_ACCEPT)
    assert answer is not None
    exchange = alice.webrtc(alice.accepted(answer))
    assert exchange.remote.setup == "active" and exchange.remote.ufrag == "Qx7e"
    assert exchange.remote.ice_options == ("trickle", "renomination")
    exchange.connecting()
    for iq in rest[:2]:
        m = from_iq(iq)
        assert alice.refusal(m) is None and alice.jingle.receive(m) is None and alice.receive(m)
    assert [c.type for c in exchange.candidates()] == ["host", "relay"]
    alice.step(Step.DATA)
    alice.step(Step.DATA_DONE)
    for iq in rest[2:]:
        m = from_iq(iq)
        assert alice.refusal(m) is None and alice.jingle.receive(m) is None and alice.receive(m)
    end = alice.next_message(A.SESSION_TERMINATE)
    assert end is not None
    alice.check_success(end)
