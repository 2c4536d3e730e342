"""The sans-IO Jingle session state machine and the session registry."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from jet_trio._errors import LocalProtocolError
from jet_trio._jingle.machine import (
    OUT_OF_ORDER,
    TIE_BREAK,
    UNKNOWN_SESSION,
    Content,
    ErrorReply,
    JingleAction,
    JingleLocalError,
    JingleMessage,
    JingleSession,
    Reason,
    ReasonCondition,
    Role,
    Senders,
    SessionRegistry,
    SessionState,
    build_jingle,
    find_jingle,
    new_sid,
    parse_jingle,
)
from jet_trio._xmpp import ns as _ns
from jet_trio._xmpp.jid import JID

A = JingleAction
S = SessionState
FIXTURES = Path(__file__).parent.parent / "fixtures" / "dino"
ALICE = JID("alice@localhost/dino")
BOB = JID("bob@localhost/dino2")
SID = "sid-1"


def _el(tag: str, **attrs: str) -> etree._Element:
    return etree.Element(tag, attrib=attrs)


def _desc() -> etree._Element:
    return _el(f"{{{_ns.JINGLE_FT}}}description")


def _transport(kind: str = _ns.JINGLE_S5B, sid: str = "t1") -> etree._Element:
    return _el(f"{{{kind}}}transport", sid=sid)


OFFER = Content(Role.INITIATOR, "a-file-offer", Senders.INITIATOR, _desc(), _transport())


def _initiate(sid: str = SID, contents: tuple[Content, ...] = (OFFER,)) -> JingleMessage:
    return JingleMessage(A.SESSION_INITIATE, sid, ALICE, contents=contents)


def _pair() -> tuple[JingleSession, JingleSession]:
    return (
        JingleSession(Role.INITIATOR, SID, ALICE, BOB),
        JingleSession(Role.RESPONDER, SID, BOB, ALICE),
    )


def _deliver(sender: JingleSession, receiver: JingleSession, msg: JingleMessage) -> None:
    assert receiver.receive(sender.send(msg)) is None


def _active_pair() -> tuple[JingleSession, JingleSession]:
    ini, res = _pair()
    _deliver(ini, res, _initiate())
    _deliver(res, ini, JingleMessage(A.SESSION_ACCEPT, SID, contents=(OFFER,)))
    return ini, res


# -- the transition table, checked against the XEP-0166 rules written out independently ---------


def _expected(sender: Role, state: SessionState, action: JingleAction) -> SessionState | None:
    """XEP-0166 §6.1 in words: the next state, or None if the action is not allowed."""
    if state is S.NEW:
        return S.PENDING if (sender, action) == (Role.INITIATOR, A.SESSION_INITIATE) else None
    if state is S.ENDED or action is A.SESSION_INITIATE:
        return None
    if action is A.SESSION_ACCEPT:
        return S.ACTIVE if (sender, state) == (Role.RESPONDER, S.PENDING) else None
    if action is A.SESSION_TERMINATE:
        return S.ENDED
    return state


def _session_in(role: Role, state: SessionState) -> JingleSession:
    own, peer = (ALICE, BOB) if role is Role.INITIATOR else (BOB, ALICE)
    session = JingleSession(role, SID, own, peer)
    if state is S.NEW:
        return session
    if role is Role.INITIATOR:
        session.initiate([OFFER])
    else:
        assert session.receive(_initiate()) is None
    if state in (S.ACTIVE, S.ENDED):
        accept = JingleMessage(A.SESSION_ACCEPT, SID, contents=(OFFER,))
        if role is Role.RESPONDER:
            session.send(accept)
        else:
            assert session.receive(accept) is None
    if state is S.ENDED:
        session.terminate()
    assert session.state is state
    return session


def _prepare(session: JingleSession, sender: Role, action: JingleAction) -> None:
    """Give ``action`` from ``sender`` what it answers (a content-add, a transport-replace)."""
    if session.state not in (S.PENDING, S.ACTIVE):
        return
    proposer = sender.other
    if action in (A.CONTENT_ACCEPT, A.CONTENT_REJECT):
        extra = Content(proposer, "extra", Senders.INITIATOR, _desc(), _transport())
        msg = JingleMessage(A.CONTENT_ADD, SID, contents=(extra,))
    elif action in (A.TRANSPORT_ACCEPT, A.TRANSPORT_REJECT):
        ibb = replace(OFFER, transport=_transport(_ns.JINGLE_IBB, "t2"))
        msg = JingleMessage(A.TRANSPORT_REPLACE, SID, contents=(ibb,))
    else:
        return
    if proposer is session.role:
        session.send(msg)
    else:
        assert session.receive(msg) is None


def _message(sender: Role, action: JingleAction) -> JingleMessage:
    key_only = Content(OFFER.creator, OFFER.name)
    contents: tuple[Content, ...] = (key_only,)
    reason = None
    info = None
    if action in (A.SESSION_INITIATE, A.SESSION_ACCEPT):
        contents = (OFFER,)
    elif action is A.SESSION_TERMINATE:
        contents, reason = (), Reason(ReasonCondition.SUCCESS)
    elif action is A.SESSION_INFO:
        contents, info = (), _el(f"{{{_ns.JINGLE_FT}}}received")
    elif action in (A.TRANSPORT_INFO, A.TRANSPORT_ACCEPT, A.TRANSPORT_REPLACE):
        contents = (replace(key_only, transport=_transport(_ns.JINGLE_IBB, "t2")),)
    elif action is A.CONTENT_ADD:
        contents = (Content(sender, "extra", Senders.INITIATOR, _desc(), _transport()),)
    elif action in (A.CONTENT_ACCEPT, A.CONTENT_REJECT):
        contents = (Content(sender.other, "extra"),)
    elif action is A.CONTENT_MODIFY:
        contents = (replace(key_only, senders=Senders.RESPONDER),)
    return JingleMessage(action, SID, contents=contents, reason=reason, info=info)


CASES = [
    (role, sending, state, action)
    for role in Role
    for sending in (True, False)
    for state in SessionState
    for action in JingleAction
]


@pytest.mark.parametrize(
    ("role", "sending", "state", "action"),
    CASES,
    ids=[f"{r.value}-{'send' if s else 'recv'}-{st.name}-{a.value}" for r, s, st, a in CASES],
)
def test_every_action_in_every_state(
    role: Role, sending: bool, state: SessionState, action: JingleAction
) -> None:
    session = _session_in(role, state)
    sender = role if sending else role.other
    _prepare(session, sender, action)
    msg = _message(sender, action)
    expected = _expected(sender, state, action)
    if sending:
        if expected is None:
            with pytest.raises(JingleLocalError):
                session.send(msg)
            assert session.state is state
        else:
            sent = session.send(msg)
            assert session.state is expected
            assert sent.sid == SID
    else:
        reply = session.receive(msg)
        if expected is None:
            assert reply is not None
            if state is S.ENDED or state is S.NEW:
                assert reply.jingle_condition == "unknown-session"
            else:
                assert reply.jingle_condition == "out-of-order"
            assert session.state is state
        else:
            assert reply is None
            assert session.state is expected


def test_send_fills_initiator_and_responder() -> None:
    ini, res = _pair()
    sent = ini.initiate([OFFER])
    assert (sent.initiator, sent.responder) == (ALICE, None)
    assert build_jingle(sent).get("initiator") == str(ALICE)
    res.receive(sent)
    accept = res.accept([OFFER])
    assert (accept.initiator, accept.responder) == (None, BOB)
    info = res.info()
    assert (info.initiator, info.responder) == (None, None)
    assert (res.initiator, res.responder, ini.initiator, ini.responder) == (ALICE, BOB, ALICE, BOB)


# -- content-level rules --------------------------------------------------------------------------


def _receive_error(session: JingleSession, msg: JingleMessage) -> ErrorReply:
    reply = session.receive(msg)
    assert reply is not None
    return reply


def test_initiate_needs_contents_with_description_and_transport() -> None:
    for contents in ((), (replace(OFFER, transport=None),), (replace(OFFER, description=None),)):
        _, res = _pair()
        reply = _receive_error(res, _initiate(contents=contents))
        assert reply.condition == "bad-request"
        assert res.state is S.NEW
    _, res = _pair()
    wrong_creator = replace(OFFER, creator=Role.RESPONDER)
    assert _receive_error(res, _initiate(contents=(wrong_creator,))).condition == "bad-request"


def test_accept_of_content_never_offered() -> None:
    ini, res = _pair()
    _deliver(ini, res, _initiate())
    stranger = replace(OFFER, name="other")
    reply = _receive_error(ini, JingleMessage(A.SESSION_ACCEPT, SID, contents=(stranger,)))
    assert reply.condition == "bad-request"
    assert ini.state is S.PENDING


def test_accept_keeps_only_accepted_contents_and_merges() -> None:
    ini, res = _pair()
    second = replace(OFFER, name="second")
    _deliver(ini, res, _initiate(contents=(OFFER, second)))
    answer = replace(OFFER, transport=_transport(sid="responder-side"))
    _deliver(res, ini, JingleMessage(A.SESSION_ACCEPT, SID, contents=(answer,)))
    assert list(ini.contents) == [OFFER.key] == list(res.contents)
    transport = ini.contents[OFFER.key].transport
    assert transport is not None and transport.get("sid") == "responder-side"


def test_transport_info_for_unknown_content_or_without_transport() -> None:
    ini, res = _active_pair()
    bad = JingleMessage(A.TRANSPORT_INFO, SID, contents=(replace(OFFER, name="nope"),))
    assert _receive_error(res, bad).condition == "bad-request"
    bare = JingleMessage(A.TRANSPORT_INFO, SID, contents=(Content(Role.INITIATOR, OFFER.name),))
    assert _receive_error(res, bare).condition == "bad-request"
    with pytest.raises(JingleLocalError):
        ini.transport_info([Content(Role.INITIATOR, OFFER.name)])


def test_wrong_sid_is_unknown_session() -> None:
    ini, _ = _active_pair()
    reply = _receive_error(ini, JingleMessage(A.SESSION_INFO, "other"))
    assert reply.jingle_condition == "unknown-session"
    with pytest.raises(JingleLocalError):
        ini.send(JingleMessage(A.SESSION_INFO, "other"))
    with pytest.raises(JingleLocalError):
        ini.receive_error(JingleMessage(A.SESSION_INFO, "other"), OUT_OF_ORDER)
    with pytest.raises(LocalProtocolError):
        JingleSession(Role.INITIATOR, "", ALICE, BOB)


def test_terminate_is_never_refused_over_contents_and_ends_at_once() -> None:
    ini, res = _active_pair()
    msg = ini.terminate(ReasonCondition.FAILED_TRANSPORT, "no candidate worked")
    assert ini.state is S.ENDED
    assert res.receive(replace(msg, contents=(Content(Role.RESPONDER, "ghost"),))) is None
    assert res.state is S.ENDED
    assert res.reason == Reason(ReasonCondition.FAILED_TRANSPORT, "no candidate worked")
    # XEP-0166 §6.7: after our terminate, anything else is unknown-session.
    reply = _receive_error(ini, JingleMessage(A.TRANSPORT_INFO, SID, contents=(OFFER,)))
    assert reply == UNKNOWN_SESSION.with_text(reply.text or "")


def test_content_add_accept_reject_remove_modify() -> None:
    ini, res = _active_pair()
    extra = Content(Role.RESPONDER, "extra", Senders.RESPONDER, _desc(), _transport())
    _deliver(res, ini, JingleMessage(A.CONTENT_ADD, SID, contents=(extra,)))
    assert ini.pending_adds == {extra.key: Role.RESPONDER} == res.pending_adds
    # The adder cannot accept its own content; a creator other than the sender is refused.
    with pytest.raises(JingleLocalError):
        res.content_accept([extra])
    forged = replace(extra, creator=Role.INITIATOR, name="forged")
    assert _receive_error(ini, JingleMessage(A.CONTENT_ADD, SID, contents=(forged,))).condition == (
        "bad-request"
    )
    # transport-info is fine for a pending content.
    _deliver(res, ini, JingleMessage(A.TRANSPORT_INFO, SID, contents=(extra,)))
    _deliver(ini, res, JingleMessage(A.CONTENT_ACCEPT, SID, contents=(Content(*extra.key),)))
    assert extra.key in ini.contents and extra.key in res.contents
    assert ini.contents[extra.key].senders is Senders.RESPONDER
    # Adding an existing content again is refused.
    again = JingleMessage(A.CONTENT_ADD, SID, contents=(extra,))
    assert _receive_error(ini, again).condition == "bad-request"
    modify = Content(*extra.key, senders=Senders.INITIATOR)
    _deliver(ini, res, JingleMessage(A.CONTENT_MODIFY, SID, contents=(modify,)))
    assert res.contents[extra.key].senders is Senders.INITIATOR
    no_senders = JingleMessage(A.CONTENT_MODIFY, SID, contents=(Content(*extra.key),))
    assert _receive_error(res, no_senders).condition == "bad-request"
    _deliver(res, ini, JingleMessage(A.CONTENT_REMOVE, SID, contents=(Content(*extra.key),)))
    assert extra.key not in ini.contents and extra.key not in res.contents
    # content-reject drops the pending content; answering twice is out of order.
    other = replace(extra, name="other")
    _deliver(res, ini, JingleMessage(A.CONTENT_ADD, SID, contents=(other,)))
    reject = JingleMessage(A.CONTENT_REJECT, SID, contents=(Content(*other.key),))
    _deliver(ini, res, reject)
    assert res.pending_adds == {} and other.key not in res.contents
    assert _receive_error(res, reject).jingle_condition == "out-of-order"


def test_content_add_refused_by_error_is_forgotten() -> None:
    ini, _ = _active_pair()
    extra = Content(Role.INITIATOR, "extra", Senders.INITIATOR, _desc(), _transport())
    sent = ini.content_add([extra])
    ini.receive_error(sent, ErrorReply("bad-request", "cancel"))
    assert ini.pending_adds == {}


def test_transport_replace_accept() -> None:
    ini, res = _active_pair()
    ibb = replace(OFFER, transport=_transport(_ns.JINGLE_IBB, "ibb1"))
    _deliver(ini, res, JingleMessage(A.TRANSPORT_REPLACE, SID, contents=(ibb,)))
    assert res.pending_replaces == {OFFER.key: Role.INITIATOR}
    assert res.proposed_transport(OFFER.key) == ibb
    # The proposer cannot answer its own replace, nor send a second one.
    with pytest.raises(JingleLocalError):
        ini.transport_accept([ibb])
    with pytest.raises(JingleLocalError):
        ini.transport_replace([ibb])
    accept = Content(OFFER.creator, OFFER.name)
    _deliver(res, ini, JingleMessage(A.TRANSPORT_ACCEPT, SID, contents=(accept,)))
    for side in (ini, res):
        transport = side.contents[OFFER.key].transport
        assert transport is not None and transport.get("sid") == "ibb1"
        assert side.pending_replaces == {}
    assert _receive_error(ini, JingleMessage(A.TRANSPORT_ACCEPT, SID, contents=(accept,))) == (
        OUT_OF_ORDER.with_text("no transport-replace of 'a-file-offer' to answer")
    )


def test_transport_replace_in_pending_state_and_reject() -> None:
    ini, res = _pair()
    _deliver(ini, res, _initiate())
    ibb = replace(OFFER, transport=_transport(_ns.JINGLE_IBB, "ibb1"))
    _deliver(res, ini, JingleMessage(A.TRANSPORT_REPLACE, SID, contents=(ibb,)))
    _deliver(ini, res, JingleMessage(A.TRANSPORT_REJECT, SID, contents=(ibb,)))
    transport = res.contents[OFFER.key].transport
    assert transport is not None and transport.get("sid") == "t1"
    assert res.state is ini.state is S.PENDING


@pytest.mark.parametrize("first", [Role.INITIATOR, Role.RESPONDER])
def test_transport_replace_crossing_initiator_wins(first: Role) -> None:
    ini, res = _active_pair()
    ini_replace = ini.transport_replace([replace(OFFER, transport=_transport(sid="from-ini"))])
    res_replace = res.transport_replace([replace(OFFER, transport=_transport(sid="from-res"))])
    # Whatever the order of arrival, the initiator refuses with tie-break and the responder yields.
    if first is Role.INITIATOR:
        tie = ini.receive(res_replace)
        assert res.receive(ini_replace) is None
    else:
        assert res.receive(ini_replace) is None
        tie = ini.receive(res_replace)
    assert tie is not None and tie.condition == "conflict" and tie.jingle_condition == "tie-break"
    assert tie == TIE_BREAK.with_text(tie.text or "")
    res.receive_error(res_replace, tie)
    assert res.pending_replaces == {OFFER.key: Role.INITIATOR} == ini.pending_replaces
    _deliver(res, ini, JingleMessage(A.TRANSPORT_ACCEPT, SID, contents=(Content(*OFFER.key),)))
    for side in (ini, res):
        transport = side.contents[OFFER.key].transport
        assert transport is not None and transport.get("sid") == "from-ini"


def test_transport_replace_refused_is_forgotten() -> None:
    ini, _ = _active_pair()
    sent = ini.transport_replace([replace(OFFER, transport=_transport(sid="x"))])
    ini.receive_error(sent, ErrorReply("feature-not-implemented", "cancel"))
    assert ini.pending_replaces == {}
    assert ini.state is S.ACTIVE


@pytest.mark.parametrize("action", [A.SESSION_INITIATE, A.SESSION_ACCEPT])
def test_refused_initiate_or_accept_ends_the_session(action: JingleAction) -> None:
    ini, res = _pair()
    sent = ini.initiate([OFFER])
    if action is A.SESSION_ACCEPT:
        res.receive(sent)
        sent = res.accept([OFFER])
        res.receive_error(sent, ErrorReply("item-not-found", "cancel", "unknown-session"))
        assert res.state is S.ENDED
    else:
        ini.receive_error(sent, ErrorReply("service-unavailable", "cancel"))
        assert ini.state is S.ENDED


# -- the registry -------------------------------------------------------------------------------


def test_registry_unknown_session_and_removal_after_terminate() -> None:
    bob = SessionRegistry(BOB)
    incoming = bob.receive(JingleMessage(A.TRANSPORT_INFO, "nope", contents=(OFFER,)), ALICE)
    assert incoming.session is None
    assert incoming.error is not None and incoming.error.jingle_condition == "unknown-session"
    first = bob.receive(_initiate(), ALICE)
    assert first.error is None and first.is_new_session and first.session is not None
    assert first.session.role is Role.RESPONDER and first.session.peer == ALICE
    assert bob.get(ALICE, SID) is first.session and len(bob) == 1
    # The same sid from another resource is another session: not found.
    other = JID("alice@localhost/phone")
    assert bob.receive(JingleMessage(A.SESSION_INFO, SID), other).error is not None
    dup = bob.receive(_initiate(), ALICE)
    assert dup.error is not None and dup.error.jingle_condition == "out-of-order"
    end = bob.receive(
        JingleMessage(A.SESSION_TERMINATE, SID, reason=Reason(ReasonCondition.SUCCESS)), ALICE
    )
    assert end.error is None and end.session is first.session
    assert first.session.state is S.ENDED
    assert len(bob) == 0 and list(bob) == []
    late = bob.receive(JingleMessage(A.SESSION_INFO, SID), ALICE)
    assert late.error is not None and late.error.jingle_condition == "unknown-session"


def test_registry_refused_initiate_is_not_registered() -> None:
    bob = SessionRegistry(BOB)
    bad = bob.receive(_initiate(contents=()), ALICE)
    assert bad.error is not None and bad.error.condition == "bad-request"
    assert bad.session is None and len(bob) == 0


def test_registry_create() -> None:
    alice = SessionRegistry(ALICE)
    session = alice.create(BOB)
    assert len(session.sid) == 32 and session.state is S.NEW
    assert alice.get(BOB, session.sid) is session
    with pytest.raises(JingleLocalError):
        alice.create(BOB, session.sid)
    assert new_sid() != new_sid()
    # A NEW session of ours has not been announced: the peer cannot talk about it yet.
    reply = alice.receive(JingleMessage(A.SESSION_INFO, session.sid), BOB).error
    assert reply is not None and reply.jingle_condition == "unknown-session"


def _always(ours: JingleSession, theirs: JingleMessage) -> bool:
    return True


@pytest.mark.parametrize(("alice_sid", "bob_sid"), [("aaa", "bbb"), ("bbb", "aaa")])
def test_crossing_session_initiates_lower_sid_wins(alice_sid: str, bob_sid: str) -> None:
    alice = SessionRegistry(ALICE, equivalent=_always)
    bob = SessionRegistry(BOB, equivalent=_always)
    from_alice = alice.create(BOB, alice_sid).initiate([OFFER])
    from_bob = bob.create(ALICE, bob_sid).initiate([OFFER])
    at_alice = alice.receive(from_bob, BOB)
    at_bob = bob.receive(from_alice, ALICE)
    winner, loser = (at_bob, at_alice) if alice_sid < bob_sid else (at_alice, at_bob)
    assert loser.error is not None and loser.error.jingle_condition == "tie-break"
    assert loser.error.condition == "conflict" and loser.session is None
    assert winner.error is None and winner.is_new_session
    assert winner.superseded is not None and winner.superseded.state is S.ENDED
    # Each registry keeps exactly the winning session.
    assert len(alice) == len(bob) == 1
    winning_sid = min(alice_sid, bob_sid)
    assert alice.get(BOB, winning_sid) is not None and bob.get(ALICE, winning_sid) is not None


def test_crossing_initiates_with_the_same_sid_lower_jid_wins() -> None:
    alice = SessionRegistry(ALICE)
    bob = SessionRegistry(BOB)
    from_alice = alice.create(BOB, "same").initiate([OFFER])
    from_bob = bob.create(ALICE, "same").initiate([OFFER])
    at_alice = alice.receive(from_bob, BOB)
    at_bob = bob.receive(from_alice, ALICE)
    assert str(ALICE) < str(BOB)
    assert at_alice.error is not None and at_alice.error.jingle_condition == "tie-break"
    assert at_bob.error is None and at_bob.superseded is not None
    assert at_bob.session is not None and at_bob.session.role is Role.RESPONDER
    assert bob.get(ALICE, "same") is at_bob.session
    alice_session = alice.get(BOB, "same")
    assert alice_session is not None and alice_session.role is Role.INITIATOR


def test_crossing_offers_that_are_not_equivalent_both_proceed() -> None:
    alice = SessionRegistry(ALICE)
    bob = SessionRegistry(BOB)
    from_alice = alice.create(BOB, "aaa").initiate([OFFER])
    from_bob = bob.create(ALICE, "bbb").initiate([OFFER])
    assert alice.receive(from_bob, BOB).error is None
    assert bob.receive(from_alice, ALICE).error is None
    assert len(alice) == len(bob) == 2


# -- Dino captures replayed through both state machines ----------------------------------------


def _capture(name: str) -> list[tuple[JID, JingleMessage, etree._Element]]:
    """(recipient, message, jingle element) for each Jingle iq of a capture file."""
    out = []
    for line in (FIXTURES / name).read_text().splitlines():
        if not line.startswith("<iq"):
            continue
        iq = etree.fromstring(line)
        jingle = find_jingle(iq)
        if jingle is None:
            continue
        to = JID(iq.get("to", ""))
        out.append((to, jingle))
    return [(to, parse_jingle(j, _peer_of(to)), j) for to, j in out]


_DINO2DINO = {ALICE: BOB, BOB: ALICE}


def _peer_of(to: JID) -> JID:
    return _DINO2DINO.get(to, ALICE)


def test_dino_to_dino_jet_transfer_replays_cleanly() -> None:
    regs = {ALICE: SessionRegistry(ALICE), BOB: SessionRegistry(BOB)}
    messages = _capture("dino2dino_jet_omemo_s5b.xml")
    assert [m.action for _, m, _ in messages] == [
        A.SESSION_INITIATE,
        A.SESSION_ACCEPT,
        A.TRANSPORT_INFO,
        A.TRANSPORT_INFO,
        A.TRANSPORT_INFO,
        A.SESSION_TERMINATE,
    ]
    sid = messages[0][1].sid
    for to, msg, _ in messages:
        frm = _DINO2DINO[to]
        if msg.action is A.SESSION_INITIATE:
            session = regs[frm].create(to, msg.sid)
        else:
            found = regs[frm].get(to, sid)
            assert found is not None
            session = found
        session.send(msg)
        incoming = regs[to].receive(msg, frm)
        assert incoming.error is None, (msg.action, incoming.error)
    alice_side = regs[BOB].get(ALICE, sid)
    assert alice_side is None and len(regs[ALICE]) == 0 and len(regs[BOB]) == 0


def test_dino_accepts_our_offer_then_terminates_with_success() -> None:
    """We (bob@localhost/peerlab) offered a file; Dino accepted, used our candidate, ended."""
    us = JID("bob@localhost/peerlab")
    registry = SessionRegistry(us)
    messages = _capture("dino_sent_s5b_receive.xml")
    sid = messages[0][1].sid
    ours = registry.create(ALICE, sid)
    offered = replace(OFFER, transport=_transport(sid="Idef4395832"))
    ours.initiate([offered])
    replies = [registry.receive(msg, ALICE) for _, msg, _ in messages]
    assert [r.error for r in replies] == [None, None, None]
    assert ours.state is S.ENDED and ours.reason == Reason(ReasonCondition.SUCCESS)
    transport = replies[0].message.contents[0].transport
    assert transport is not None and transport.get("dstaddr", "").startswith("e38c14fe")
    # Anything after Dino's terminate is an unknown session.
    late = registry.receive(messages[1][1], ALICE)
    assert late.error is not None and late.error.jingle_condition == "unknown-session"


def test_dino_offers_us_a_file() -> None:
    us = JID("bob@localhost/recv")
    registry = SessionRegistry(us)
    (initiate, transport_info) = [m for _, m, _ in _capture("dino_sent_s5b_send.xml")]
    incoming = registry.receive(initiate, ALICE)
    assert incoming.is_new_session and incoming.error is None
    session = incoming.session
    assert session is not None and session.initiator == ALICE and session.responder == us
    (content,) = session.contents.values()
    assert content.senders is Senders.INITIATOR and content.transport is not None
    # The two proxy candidates Dino sends are the same host and port: kept as they are.
    candidates = content.transport.findall(f"{{{_ns.JINGLE_S5B}}}candidate")
    assert len(candidates) == 2
    assert {(c.get("host"), c.get("port")) for c in candidates} == {("127.0.0.1", "5000")}
    accept = session.accept(
        [replace(content, transport=_transport(sid=content.transport.get("sid", "")))]
    )
    assert build_jingle(accept).get("responder") == str(us)
    assert session.state is S.ACTIVE
    assert registry.receive(transport_info, ALICE).error is None
    done = session.terminate()
    assert build_jingle(done).find(f"{{{_ns.JINGLE}}}reason/{{{_ns.JINGLE}}}success") is not None


# -- properties -----------------------------------------------------------------------------------

_keys = st.sampled_from([OFFER.key, OFFER.key, (Role.INITIATOR, "b"), (Role.RESPONDER, "c")])
# Terminating is rare, so that sequences get deep into the session.
_actions = st.sampled_from(
    [a for a in JingleAction if a is not A.SESSION_TERMINATE] * 8 + [A.SESSION_TERMINATE]
)


_mostly = st.sampled_from([True, True, True, False])


@st.composite
def _contents(draw: st.DrawFn) -> Content:
    creator, name = draw(_keys)
    return Content(
        creator,
        name,
        draw(st.none() | st.sampled_from(Senders)),
        _desc() if draw(_mostly) else None,
        _transport(sid=draw(st.sampled_from(["t1", "t2"]))) if draw(_mostly) else None,
    )


@st.composite
def _messages(draw: st.DrawFn, who: Role | None = None) -> JingleMessage:
    action = draw(_actions)
    reason = draw(st.none() | st.sampled_from(ReasonCondition).map(Reason))
    contents = tuple({c.key: c for c in draw(st.lists(_contents(), max_size=2))}.values())
    if who is not None and contents and draw(_mostly):
        # Steer towards messages that make sense for this sender, to reach deep states.
        first = contents[0]
        name = draw(st.sampled_from(["x", "y"]))
        if action is A.CONTENT_ADD:
            contents = (replace(first, creator=who, name=name),)
        elif action in (A.CONTENT_ACCEPT, A.CONTENT_REJECT):
            contents = (Content(who.other, name),)
        elif action in (A.TRANSPORT_ACCEPT, A.TRANSPORT_REJECT, A.TRANSPORT_REPLACE):
            contents = (replace(first, creator=OFFER.creator, name=OFFER.name),)
    return JingleMessage(
        action, SID if draw(_mostly) else "other", contents=contents, reason=reason
    )


_steps = st.sampled_from(Role).flatmap(
    lambda who: st.tuples(st.just(who), _messages(who) | st.booleans())
)


def _answer(session: JingleSession, accept: bool) -> JingleMessage | None:
    """Accept or reject something the peer proposed, if anything is pending."""
    peer = session.role.other
    for key, who in session.pending_replaces.items():
        if who is peer:
            action = A.TRANSPORT_ACCEPT if accept else A.TRANSPORT_REJECT
            return JingleMessage(action, SID, contents=(Content(*key),))
    for key, who in session.pending_adds.items():
        if who is peer:
            action = A.CONTENT_ACCEPT if accept else A.CONTENT_REJECT
            return JingleMessage(action, SID, contents=(Content(*key),))
    return None


@settings(max_examples=200)
@given(st.booleans(), st.lists(_steps, max_size=40))
def test_random_exchanges_keep_both_sides_in_step(
    accept: bool, steps: list[tuple[Role, JingleMessage | bool]]
) -> None:
    ini, res = _pair()
    _deliver(ini, res, _initiate())
    if accept:
        _deliver(res, ini, JingleMessage(A.SESSION_ACCEPT, SID, contents=(OFFER,)))
    sides = {Role.INITIATOR: ini, Role.RESPONDER: res}
    for who, step in steps:
        sender, receiver = sides[who], sides[who.other]
        msg = _answer(sender, step) if isinstance(step, bool) else step
        if msg is None:
            continue
        try:
            sent = sender.send(msg)
        except JingleLocalError:
            continue
        # What one side may send, the other side must accept, and they must agree afterwards.
        assert receiver.receive(sent) is None
        assert ini.state is res.state
        assert dict(ini.pending_adds) == dict(res.pending_adds)
        assert dict(ini.pending_replaces) == dict(res.pending_replaces)
        assert set(ini.contents) == set(res.contents)


@settings(max_examples=200)
@given(st.sampled_from(Role), st.lists(st.tuples(st.booleans(), _messages()), max_size=25))
def test_random_input_only_raises_typed_errors(
    role: Role, steps: list[tuple[bool, JingleMessage]]
) -> None:
    session = JingleSession(role, SID, ALICE, BOB)
    registry = SessionRegistry(BOB)
    for outgoing, msg in steps:
        if outgoing:
            with contextlib.suppress(JingleLocalError):
                session.send(msg)
        else:
            reply = session.receive(msg)
            assert reply is None or isinstance(reply, ErrorReply)
            incoming = registry.receive(msg, ALICE)
            assert incoming.error is None or isinstance(incoming.error, ErrorReply)
        # The wire form of anything accepted parses back to the same message.
        assert parse_jingle(build_jingle(replace(msg, initiator=None)), ALICE).action is msg.action


def test_registry_session_info_payloads() -> None:
    bob = SessionRegistry(BOB)
    assert bob.receive(_initiate(), ALICE).error is None
    ping = bob.receive(JingleMessage(A.SESSION_INFO, SID), ALICE)
    assert ping.error is None
    received = _el(f"{{{_ns.JINGLE_FT}}}received", creator="initiator", name="a-file-offer")
    assert bob.receive(JingleMessage(A.SESSION_INFO, SID, info=received), ALICE).error is None
    ringing = _el("{urn:xmpp:jingle:apps:rtp:1:info}ringing")
    reply = bob.receive(JingleMessage(A.SESSION_INFO, SID, info=ringing), ALICE).error
    assert reply is not None
    assert (reply.condition, reply.jingle_condition) == (
        "feature-not-implemented",
        "unsupported-info",
    )
    rtp = SessionRegistry(BOB, info_namespaces=["urn:xmpp:jingle:apps:rtp:1:info"])
    assert rtp.receive(_initiate(), ALICE).error is None
    assert rtp.receive(JingleMessage(A.SESSION_INFO, SID, info=ringing), ALICE).error is None
