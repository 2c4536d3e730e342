"""Jingle messages: parsing, building, reasons and error replies (no session state)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from jet_trio._errors import RemoteProtocolError
from jet_trio._jingle.message import (
    BAD_REQUEST,
    OUT_OF_ORDER,
    SECURITY_REQUIRED,
    TIE_BREAK,
    UNKNOWN_SESSION,
    UNSUPPORTED_INFO,
    Content,
    ErrorReply,
    JingleAction,
    JingleMessage,
    JingleProtocolError,
    Reason,
    ReasonCondition,
    Role,
    Senders,
    build_error,
    build_jingle,
    content_security,
    find_jingle,
    parse_error,
    parse_jingle,
)
from jet_trio._xmpp import ns as _ns
from jet_trio._xmpp.jid import JID

FIXTURES = Path(__file__).parent.parent / "fixtures" / "dino"
J = _ns.JINGLE
ALICE = JID("alice@localhost/dino")
BOB = JID("bob@localhost/dino2")


def _jingle(body: str = "", **attrs: str) -> etree._Element:
    attrs = {"action": "session-info", "sid": "s1", **attrs}
    text = " ".join(f"{k}='{v}'" for k, v in attrs.items())
    return etree.fromstring(f"<jingle xmlns='{J}' {text}>{body}</jingle>")


def _c14n(el: etree._Element | None) -> bytes:
    assert el is not None
    return etree.tostring(copy.deepcopy(el))


def _iqs(name: str) -> list[etree._Element]:
    lines = (FIXTURES / name).read_text().splitlines()
    return [etree.fromstring(line) for line in lines if line.startswith("<iq")]


def test_every_action_parses_and_round_trips() -> None:
    for action in JingleAction:
        msg = parse_jingle(_jingle(action=action.value), ALICE)
        assert msg.action is action
        assert parse_jingle(build_jingle(msg), ALICE) == msg
    assert len(JingleAction) == 15


def test_dino_session_initiate_with_security_and_duplicate_candidates() -> None:
    iq = _iqs("dino2dino_jet_omemo_s5b.xml")[0]
    jingle = find_jingle(iq)
    assert jingle is not None
    msg = parse_jingle(jingle, ALICE)
    assert msg.action is JingleAction.SESSION_INITIATE
    assert msg.sid == "9d6fb2d4-8f50-4793-ac1e-3b5c6ceb67ba"
    assert msg.initiator == ALICE
    (content,) = msg.contents
    assert content.key == (Role.INITIATOR, "a-file-offer")
    assert content.senders is Senders.INITIATOR
    assert content.description is not None
    assert etree.QName(content.description).namespace == _ns.JINGLE_FT
    assert content.transport is not None
    assert etree.QName(content.transport).namespace == _ns.JINGLE_S5B
    assert len(content.transport.findall(f"{{{_ns.JINGLE_S5B}}}candidate")) == 2
    assert content.security is not None
    assert content.security.get("cipher") == "urn:xmpp:ciphers:aes-128-gcm-nopadding"
    assert msg.security == ()
    rebuilt = parse_jingle(build_jingle(msg), ALICE)
    (again,) = rebuilt.contents
    for part in ("description", "transport", "security"):
        assert _c14n(getattr(again, part)) == _c14n(getattr(content, part))
    # Building does not steal the parsed elements from their tree.
    assert content.transport.getparent() is not None


def test_dino_messages_all_parse() -> None:
    count = 0
    for name in ("dino2dino_jet_omemo_s5b.xml", "dino_sent_s5b_receive.xml"):
        for iq in _iqs(name):
            jingle = find_jingle(iq)
            assert jingle is not None
            parse_jingle(jingle, ALICE)
            count += 1
    ibb = next(
        line
        for line in (FIXTURES / "dino_sent_ibb_receive.txt").read_text().splitlines()
        if line.startswith("<iq")
    )
    jingle = find_jingle(etree.fromstring(ibb))
    assert jingle is not None
    accept = parse_jingle(jingle, BOB)
    assert accept.responder == BOB and accept.initiator is None
    assert accept.contents[0].transport is not None
    assert accept.contents[0].transport.get("block-size") == "4096"
    assert count == 9


def test_find_jingle_with_and_without_client_namespace() -> None:
    for iq_ns in ("", f" xmlns='{_ns.CLIENT}'"):
        iq = etree.fromstring(f"<iq{iq_ns} type='set'><x/><jingle xmlns='{J}'/></iq>")
        assert find_jingle(iq) is iq[1]
    assert find_jingle(etree.fromstring("<iq><jingle xmlns='urn:other'/></iq>")) is None


def test_initiator_defaults_to_iq_from_and_differing_attribute_is_ignored() -> None:
    missing = parse_jingle(_jingle(action="session-initiate"), ALICE)
    assert missing.initiator == ALICE
    spoofed = parse_jingle(_jingle(action="session-initiate", initiator="mallory@evil/x"), ALICE)
    assert spoofed.initiator == ALICE
    other = parse_jingle(_jingle(action="transport-info", initiator="x@y/z"), ALICE)
    assert other.initiator is None


def test_security_under_jingle_is_kept() -> None:
    msg = parse_jingle(
        _jingle(
            f"<content creator='initiator' name='f'/><security xmlns='{_ns.JET}' name='f'/>",
            action="session-initiate",
        ),
        ALICE,
    )
    assert len(msg.security) == 1
    assert msg.security[0].get("name") == "f"
    assert msg.info is None
    rebuilt = build_jingle(msg)
    assert rebuilt.find(f"{{{_ns.JET}}}security") is not None


def test_info_payload() -> None:
    msg = parse_jingle(
        _jingle(f"<received xmlns='{_ns.JINGLE_FT}' creator='initiator' name='f'/>"), ALICE
    )
    assert msg.info is not None and msg.info.get("name") == "f"
    assert parse_jingle(_jingle(), ALICE).info is None


def test_content_defaults_and_disposition() -> None:
    msg = parse_jingle(_jingle("<content name='c' disposition='early-session'/>"), ALICE)
    (content,) = msg.contents
    assert content == Content(Role.INITIATOR, "c", None, disposition="early-session")
    xml = etree.tostring(build_jingle(msg)).decode()
    assert "senders" not in xml and 'disposition="early-session"' in xml


@pytest.mark.parametrize(
    ("element", "match"),
    [
        ("<jingle xmlns='urn:xmpp:jingle:0' action='session-info' sid='x'/>", "expected a"),
        (f"<jingle xmlns='{J}' sid='x'/>", "action is missing"),
        (f"<jingle xmlns='{J}' action='session-redirect' sid='x'/>", "unknown Jingle action"),
        (f"<jingle xmlns='{J}' action='session-info'/>", "session id is missing"),
        (f"<jingle xmlns='{J}' action='session-info' sid=''/>", "session id is missing"),
        (f"<jingle xmlns='{J}' action='session-info' sid='{'x' * 2000}'/>", "longer than"),
        (
            f"<jingle xmlns='{J}' action='session-initiate' sid='x' initiator='@bad'/>",
            "invalid initiator",
        ),
        (f"<jingle xmlns='{J}' action='session-info' sid='x'><content/></jingle>", "content name"),
        (
            f"<jingle xmlns='{J}' action='session-info' sid='x'>"
            "<content name='c' creator='someone'/></jingle>",
            "unknown content creator",
        ),
        (
            f"<jingle xmlns='{J}' action='session-info' sid='x'>"
            "<content name='c' senders='all'/></jingle>",
            "unknown content senders",
        ),
        (
            f"<jingle xmlns='{J}' action='session-info' sid='x'><content name='c'>"
            "<transport xmlns='a'/><transport xmlns='b'/></content></jingle>",
            "more than one <transport/>",
        ),
        (
            f"<jingle xmlns='{J}' action='session-info' sid='x'>"
            "<content name='c'/><content name='c' creator='initiator'/></jingle>",
            "same creator and name",
        ),
        (
            f"<jingle xmlns='{J}' action='session-info' sid='x'>"
            "<reason><success/></reason><reason><busy/></reason></jingle>",
            "more than one <reason/>",
        ),
    ],
)
def test_malformed_jingle_is_bad_request(element: str, match: str) -> None:
    with pytest.raises(JingleProtocolError, match=match) as info:
        parse_jingle(etree.fromstring(element), ALICE)
    assert info.value.reply.condition == "bad-request"
    assert info.value.reply.text is not None
    assert isinstance(info.value, RemoteProtocolError)


@pytest.mark.parametrize("condition", list(ReasonCondition))
def test_every_reason_round_trips(condition: ReasonCondition) -> None:
    msg = JingleMessage(
        JingleAction.SESSION_TERMINATE, "s", reason=Reason(condition, text="why not")
    )
    el = build_jingle(msg)
    assert el.find(f"{{{J}}}reason/{{{J}}}{condition.value}") is not None
    assert parse_jingle(el, ALICE) == msg


def test_alternative_session_and_detail() -> None:
    detail = etree.Element(f"{{{_ns.JINGLE_FT_ERRORS}}}file-too-large")
    msg = JingleMessage(
        JingleAction.SESSION_TERMINATE,
        "s",
        reason=Reason(ReasonCondition.ALTERNATIVE_SESSION, alternative_sid="old", detail=detail),
    )
    el = build_jingle(msg)
    xml = etree.tostring(el).decode()
    assert "<alternative-session><sid>old</sid></alternative-session>" in xml
    back = parse_jingle(el, ALICE).reason
    assert back is not None
    assert back.condition is ReasonCondition.ALTERNATIVE_SESSION
    assert back.alternative_sid == "old"
    assert back.detail is not None and back.detail.tag == detail.tag


@pytest.mark.parametrize(
    "body", ["<reason/>", "<reason><weird/></reason>", "<reason><x:y xmlns:x='u'/></reason>"]
)
def test_unknown_or_missing_reason_condition_is_general_error(body: str) -> None:
    msg = parse_jingle(_jingle(body, action="session-terminate"), ALICE)
    assert msg.reason is not None
    assert msg.reason.condition is ReasonCondition.GENERAL_ERROR


def test_dino_terminate_success() -> None:
    jingle = find_jingle(_iqs("dino2dino_jet_omemo_s5b.xml")[-1])
    assert jingle is not None
    msg = parse_jingle(jingle, BOB)
    assert msg.action is JingleAction.SESSION_TERMINATE
    assert msg.reason == Reason(ReasonCondition.SUCCESS)


@pytest.mark.parametrize(
    ("reply", "xml"),
    [
        (
            UNKNOWN_SESSION,
            "<error xmlns='jabber:client' type='cancel'>"
            "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<unknown-session xmlns='urn:xmpp:jingle:errors:1'/></error>",
        ),
        (
            OUT_OF_ORDER,
            "<error xmlns='jabber:client' type='wait'>"
            "<unexpected-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<out-of-order xmlns='urn:xmpp:jingle:errors:1'/></error>",
        ),
        (
            TIE_BREAK,
            "<error xmlns='jabber:client' type='cancel'>"
            "<conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<tie-break xmlns='urn:xmpp:jingle:errors:1'/></error>",
        ),
        (
            UNSUPPORTED_INFO,
            "<error xmlns='jabber:client' type='modify'>"
            "<feature-not-implemented xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<unsupported-info xmlns='urn:xmpp:jingle:errors:1'/></error>",
        ),
        (
            SECURITY_REQUIRED,
            "<error xmlns='jabber:client' type='cancel'>"
            "<not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<security-required xmlns='urn:xmpp:jingle:errors:1'/></error>",
        ),
        (
            BAD_REQUEST.with_text("no"),
            "<error xmlns='jabber:client' type='cancel'>"
            "<bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>no</text></error>",
        ),
    ],
)
def test_error_elements(reply: ErrorReply, xml: str) -> None:
    el = build_error(reply)
    assert etree.tostring(el, method="c14n") == etree.tostring(etree.fromstring(xml), method="c14n")
    assert parse_error(el) == reply


def test_parse_error_without_client_namespace_and_defaults() -> None:
    el = etree.fromstring(
        "<error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "<tie-break xmlns='urn:xmpp:jingle:errors:1'/><x xmlns='urn:app'/></error>"
    )
    assert parse_error(el) == ErrorReply("conflict", "cancel", "tie-break")
    assert parse_error(etree.fromstring("<error type='wait'/>")) == ErrorReply(
        "undefined-condition", "wait"
    )


def sec(**attrs: str) -> etree._Element:
    return etree.Element(f"{{{_ns.JET}}}security", attrib=attrs)


def test_content_security_finds_the_element_wherever_it_is() -> None:
    inner = sec()
    own = Content(Role.INITIATOR, "f", security=inner)
    plain = Content(Role.INITIATOR, "f")
    other = Content(Role.INITIATOR, "g")
    msg = JingleMessage(JingleAction.SESSION_INITIATE, "s", contents=(own,))
    assert content_security(msg, own) is inner
    named = sec(name="f")
    two = JingleMessage(
        JingleAction.SESSION_INITIATE, "s", contents=(plain, other), security=(named,)
    )
    assert content_security(two, plain) is named
    assert content_security(two, other) is None
    lone = sec()
    one = JingleMessage(JingleAction.SESSION_INITIATE, "s", contents=(plain,), security=(lone,))
    assert content_security(one, plain) is lone
    bare = JingleMessage(JingleAction.SESSION_INITIATE, "s", contents=(plain,))
    assert content_security(bare, plain) is None


def test_content_security_fails_closed_when_ambiguous() -> None:
    """Two candidates for one content (the red team's two <security> under <jingle>, taken
    as "unencrypted" before), an unnamed one with several contents, one naming no content."""
    plain = Content(Role.INITIATOR, "f")
    other = Content(Role.INITIATOR, "g")
    own = Content(Role.INITIATOR, "f", security=sec())
    cases = [
        JingleMessage(
            JingleAction.SESSION_INITIATE, "s", contents=(plain,), security=(sec(), sec())
        ),
        JingleMessage(
            JingleAction.SESSION_INITIATE, "s", contents=(plain,), security=(sec(name="f"), sec())
        ),
        JingleMessage(
            JingleAction.SESSION_INITIATE,
            "s",
            contents=(plain,),
            security=(sec(name="f"), sec(name="f")),
        ),
        JingleMessage(JingleAction.SESSION_INITIATE, "s", contents=(own,), security=(sec(),)),
        JingleMessage(
            JingleAction.SESSION_INITIATE, "s", contents=(own,), security=(sec(name="f"),)
        ),
        JingleMessage(
            JingleAction.SESSION_INITIATE, "s", contents=(plain, other), security=(sec(),)
        ),
        JingleMessage(
            JingleAction.SESSION_INITIATE, "s", contents=(plain,), security=(sec(name="zz"),)
        ),
    ]
    for msg in cases:
        with pytest.raises(JingleProtocolError):
            content_security(msg, msg.contents[0])


_attr = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)


@given(
    _attr, _attr, _attr, _attr, _attr, st.sampled_from(["", "<reason/>", "<reason><x/></reason>"])
)
def test_parse_jingle_hostile_attributes_only_raise_typed_errors(
    action: str, sid: str, creator: str, senders: str, name: str, extra: str
) -> None:
    el = etree.fromstring(f"<jingle xmlns='{J}'><content/>{extra}</jingle>")
    for target, key, value in (
        (el, "action", action),
        (el, "sid", sid),
        (el, "initiator", name),
        (el[0], "creator", creator),
        (el[0], "senders", senders),
        (el[0], "name", name),
    ):
        target.set(key, value)
    try:
        msg = parse_jingle(el, ALICE)
    except JingleProtocolError as exc:
        assert exc.reply.condition == "bad-request"
        return
    assert parse_jingle(build_jingle(msg), ALICE) == msg
