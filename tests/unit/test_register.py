"""XEP-0077 in-band registration, sans-IO: only after verified TLS, only the fields we can fill
in, the server's refusals in words."""

from __future__ import annotations

import pytest
from lxml import etree

from jet_trio._xmpp.jid import JID
from jet_trio._xmpp.negotiation import SendBytes, TLSError, TLSInfo
from jet_trio._xmpp.register import RegistrationError, RegistrationNegotiator
from jet_trio._xmpp.xml import StanzaReceived, StreamOpened

JIDS = JID("dave@example.org")
FEATURES = (
    "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>"
    "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
    "</mechanisms>{extra}</stream:features>"
)
REGISTER = "<register xmlns='http://jabber.org/features/iq-register'/>"


def _el(xml: str) -> StanzaReceived:
    return StanzaReceived(etree.fromstring(xml))


def _sent(actions: list[object]) -> etree._Element:
    (action,) = actions
    assert isinstance(action, SendBytes)
    return etree.fromstring(action.data)


def _at_features(
    tls: TLSInfo | None, extra: str = REGISTER
) -> tuple[RegistrationNegotiator, list[object]]:
    neg = RegistrationNegotiator(JIDS, "s3cret", tls=tls)
    neg.start()
    neg.receive(StreamOpened({"version": "1.0", "id": "s1"}))
    return neg, list(neg.receive(_el(FEATURES.format(extra=extra))))


def _answer(
    neg: RegistrationNegotiator, asked: etree._Element, body: str, type_: str = "result"
) -> list[object]:
    return list(
        neg.receive(
            _el(f"<iq xmlns='jabber:client' type='{type_}' id='{asked.get('id')}'>{body}</iq>")
        )
    )


def test_registers_with_user_name_and_password() -> None:
    neg, actions = _at_features(TLSInfo("example.org", "TLSv1.3"))
    get = _sent(actions)
    assert (get.get("type"), get[0].tag) == ("get", "{jabber:iq:register}query")
    form = (
        "<query xmlns='jabber:iq:register'><instructions>Choose</instructions>"
        "<username/><password/></query>"
    )
    submit = _sent(_answer(neg, get, form))
    assert submit.get("type") == "set"
    assert submit.findtext("{jabber:iq:register}query/{jabber:iq:register}username") == "dave"
    assert submit.findtext("{jabber:iq:register}query/{jabber:iq:register}password") == "s3cret"
    assert not neg.registered
    # An unrelated stanza is ignored.
    assert list(neg.receive(_el("<message xmlns='jabber:client'/>"))) == []
    done = _answer(neg, submit, "")
    assert neg.registered
    assert isinstance(done[0], SendBytes) and b"</stream:stream>" in done[0].data


def test_nothing_before_verified_tls() -> None:
    with pytest.raises(TLSError):
        _at_features(TLSInfo(None, "TLSv1.3"))
    with pytest.raises(TLSError):
        _at_features(TLSInfo("other.example", "TLSv1.3"))


def test_server_without_registration() -> None:
    with pytest.raises(RegistrationError, match="does not offer in-band registration"):
        _at_features(TLSInfo("example.org", "TLSv1.3"), extra="")


@pytest.mark.parametrize(
    ("form", "match"),
    [
        ("<username/><password/><email/>", "also asks for email"),
        ("<x xmlns='jabber:x:data' type='form'/>", "cannot fill in"),
    ],
)
def test_forms_we_cannot_fill_in(form: str, match: str) -> None:
    neg, actions = _at_features(TLSInfo("example.org", "TLSv1.3"))
    with pytest.raises(RegistrationError, match=match):
        _answer(neg, _sent(actions), f"<query xmlns='jabber:iq:register'>{form}</query>")


@pytest.mark.parametrize(
    ("condition", "match"),
    [
        ("conflict", "the account dave@example.org already exists"),
        ("not-acceptable", "refused the user name or the password of dave@example.org: weak"),
        ("not-allowed", "does not allow registering accounts from a client"),
        ("resource-constraint", "limits registrations"),
    ],
)
def test_refusals(condition: str, match: str) -> None:
    neg, actions = _at_features(TLSInfo("example.org", "TLSv1.3"))
    form = "<query xmlns='jabber:iq:register'><username/><password/></query>"
    submit = _sent(_answer(neg, _sent(actions), form))
    error = (
        f"<error type='cancel'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>weak</text></error>"
    )
    with pytest.raises(RegistrationError, match=match) as caught:
        _answer(neg, submit, error, type_="error")
    assert caught.value.condition == condition
