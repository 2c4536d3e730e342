"""SASL mechanisms and client stream negotiation, sans-IO (no sockets)."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
import scramp
from lxml import etree

from jet_trio import JID, AuthenticationError, NoCommonMechanism, RemoteProtocolError, StreamError
from jet_trio._xmpp.negotiation import (
    Action,
    ClientNegotiator,
    ConnectionLost,
    Negotiated,
    RestartStream,
    SendBytes,
    StartTLS,
    TLSError,
    TLSInfo,
)
from jet_trio._xmpp.sasl import SaslMechanism, choose_mechanism
from jet_trio._xmpp.xml import StanzaReceived, StreamClosed, StreamOpened

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
def test_scram_against_scramp_server(mech: str) -> None:
    m = scramp.ScramMechanism(mech)
    salt, stored, server_key, iters = m.make_auth_info("s3cret", iteration_count=4096)
    server = m.make_server(lambda user: (salt, stored, server_key, iters))
    client = SaslMechanism(mech, "alice", "s3cret")
    server.set_client_first(client.initial().decode())
    final = client.challenge(server.get_server_first().encode())
    server.set_client_final(final.decode())
    client.success(server.get_server_final().encode())  # verifies the server signature


def test_scram_rejects_forged_server_signature() -> None:
    m = scramp.ScramMechanism("SCRAM-SHA-256")
    salt, stored, server_key, iters = m.make_auth_info("other-password", iteration_count=4096)
    server = m.make_server(lambda user: (salt, stored, server_key, iters))
    client = SaslMechanism("SCRAM-SHA-256", "alice", "s3cret")
    server.set_client_first(client.initial().decode())
    client.challenge(server.get_server_first().encode())
    with pytest.raises(AuthenticationError, match="signature"):
        client.success(b"v=" + base64.b64encode(b"\0" * 32))


def test_scram_success_without_proof_is_refused() -> None:
    client = SaslMechanism("SCRAM-SHA-1", "alice", "pw")
    client.initial()
    with pytest.raises(AuthenticationError, match="without proving"):
        client.success(b"")


def test_plain_initial_response() -> None:
    assert SaslMechanism("PLAIN", "alice", "pw").initial() == b"\0alice\0pw"


def test_choose_strongest_and_plain_only_over_tls() -> None:
    offered = ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"]
    assert choose_mechanism(offered, secure=True) == "SCRAM-SHA-256"
    assert choose_mechanism(["PLAIN", "SCRAM-SHA-1"], secure=False) == "SCRAM-SHA-1"
    assert choose_mechanism(["PLAIN"], secure=True) == "PLAIN"
    with pytest.raises(NoCommonMechanism, match="refusing to send the password"):
        choose_mechanism(["PLAIN"], secure=False)
    with pytest.raises(NoCommonMechanism, match="DIGEST-MD5"):
        choose_mechanism(["DIGEST-MD5"], secure=True)


# -- negotiation --------------------------------------------------------------------------------


def el(xml: str) -> StanzaReceived:
    return StanzaReceived(etree.fromstring(xml))


OPEN = StreamOpened({"id": "s1", "version": "1.0", "from": "example.org"}, "jabber:client")
STREAM_NS = "xmlns:stream='http://etherx.jabber.org/streams'"
TLS_FEATURES = el(
    f"<stream:features {STREAM_NS}><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
    "<required/></starttls></stream:features>"
)


def sasl_features(*mechs: str) -> StanzaReceived:
    inner = "".join(f"<mechanism>{m}</mechanism>" for m in mechs)
    return el(
        f"<stream:features {STREAM_NS}><mechanisms xmlns='{SASL}'>{inner}</mechanisms>"
        "</stream:features>"
    )


BIND_FEATURES = el(
    f"<stream:features {STREAM_NS}><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
    "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>"
    "</stream:features>"
)


def sent(actions: list[Action]) -> list[etree._Element]:
    return [
        etree.fromstring(a.data)
        for a in actions
        if isinstance(a, SendBytes)
        if not a.data.startswith(b"<?xml")
    ]


def login_until_bind(neg: ClientNegotiator, password: str = "pw") -> etree._Element:
    m = scramp.ScramMechanism("SCRAM-SHA-1")
    salt, stored, server_key, iters = m.make_auth_info(password, iteration_count=4096)
    server = m.make_server(lambda user: (salt, stored, server_key, iters))
    assert neg.receive(OPEN) == []
    (starttls,) = sent(neg.receive(TLS_FEATURES))
    assert starttls.tag == "{urn:ietf:params:xml:ns:xmpp-tls}starttls"
    assert neg.receive(el("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")) == [StartTLS()]
    actions = neg.tls_established(TLSInfo("example.org", "TLSv1.3"))
    assert isinstance(actions[0], RestartStream)
    neg.receive(OPEN)
    (auth,) = sent(neg.receive(sasl_features("SCRAM-SHA-1", "PLAIN")))
    assert auth.get("mechanism") == "SCRAM-SHA-1"
    server.set_client_first(base64.b64decode(auth.text or "").decode())
    first = base64.b64encode(server.get_server_first().encode()).decode()
    (resp,) = sent(neg.receive(el(f"<challenge xmlns='{SASL}'>{first}</challenge>")))
    server.set_client_final(base64.b64decode(resp.text or "").decode())
    final = base64.b64encode(server.get_server_final().encode()).decode()
    actions = neg.receive(el(f"<success xmlns='{SASL}'>{final}</success>"))
    assert isinstance(actions[0], RestartStream)
    neg.receive(OPEN)
    (bind_iq,) = sent(neg.receive(BIND_FEATURES))
    return bind_iq


def test_full_negotiation() -> None:
    neg = ClientNegotiator(JID("alice@example.org/desk"), "pw")
    assert neg.start()[0].data.startswith(b"<?xml")  # type: ignore[union-attr]
    bind_iq = login_until_bind(neg)
    assert bind_iq.findtext(".//{urn:ietf:params:xml:ns:xmpp-bind}resource") == "desk"
    result = el(
        f"<iq xmlns='jabber:client' type='result' id='{bind_iq.get('id')}'>"
        "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@example.org/desk</jid></bind>"
        "</iq>"
    )
    (done,) = neg.receive(result)
    assert isinstance(done, Negotiated)
    assert done.jid == JID("alice@example.org/desk") and done.stream_id == "s1"
    assert neg.mechanism == "SCRAM-SHA-1"


def test_bind_reply_with_wrong_id_is_a_protocol_error() -> None:
    neg = ClientNegotiator(JID("alice@example.org"), "pw")
    login_until_bind(neg)
    with pytest.raises(RemoteProtocolError):
        neg.receive(el("<iq xmlns='jabber:client' type='result' id='other'/>"))


def test_no_starttls_offered_is_refused() -> None:
    neg = ClientNegotiator(JID("alice@example.org"), "pw")
    neg.receive(OPEN)
    with pytest.raises(TLSError, match="does not offer STARTTLS"):
        neg.receive(sasl_features("PLAIN"))


def test_sasl_failure_is_authentication_error() -> None:
    neg = ClientNegotiator(JID("alice@example.org"), "pw", tls=TLSInfo("example.org"))
    neg.receive(OPEN)
    neg.receive(sasl_features("PLAIN"))
    fail = el(f"<failure xmlns='{SASL}'><not-authorized/><text>nope</text></failure>")
    with pytest.raises(AuthenticationError, match="wrong password") as info:
        neg.receive(fail)
    assert info.value.condition == "not-authorized"


def test_stream_error_during_negotiation() -> None:
    neg = ClientNegotiator(JID("alice@example.org"), "pw")
    neg.receive(OPEN)
    err = el(
        f"<stream:error {STREAM_NS}><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        "</stream:error>"
    )
    with pytest.raises(StreamError, match="host-unknown"):
        neg.receive(err)


@pytest.mark.parametrize(
    ("event", "exc"),
    [
        (StreamClosed(), ConnectionLost),
        (el("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"), RemoteProtocolError),
    ],
)
def test_unexpected_events(event: object, exc: Callable[..., BaseException]) -> None:
    neg = ClientNegotiator(JID("alice@example.org"), "pw")
    neg.receive(OPEN)
    with pytest.raises(exc):  # type: ignore[call-overload]
        neg.receive(event)  # type: ignore[arg-type]


def test_old_stream_version_refused() -> None:
    neg = ClientNegotiator(JID("alice@example.org"), "pw")
    with pytest.raises(RemoteProtocolError, match=r"1\.0"):
        neg.receive(StreamOpened({"id": "x"}, "jabber:client"))
