"""The test server's stream negotiation, sans-IO (no sockets)."""

from __future__ import annotations

import base64
from typing import Any

import scramp
from lxml import etree

from jet_trio import JID
from jet_trio._xmpp import ns as ns
from jet_trio.testing._negotiation import (
    Action,
    BindRequested,
    Close,
    Phase,
    Restart,
    Send,
    ServerNegotiation,
    StartTLS,
)

HEADER = {"to": "localhost", "version": "1.0"}


def q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


def el(text: str) -> etree._Element:
    return etree.fromstring(text.encode())


def sent(actions: list[Action]) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Send))


def last_element(actions: list[Action]) -> etree._Element:
    data = [a.data for a in actions if isinstance(a, Send)][-1]
    return etree.fromstring(data.replace(b"</stream:stream>", b""))


def negotiation(**kwargs: Any) -> ServerNegotiation:
    return ServerNegotiation("localhost", {"alice": "pw"}.get, **kwargs)


def auth(mech: str, payload: bytes) -> etree._Element:
    data = base64.b64encode(payload).decode() or "="
    return el(f"<auth xmlns='{ns.SASL}' mechanism='{mech}'>{data}</auth>")


def response(payload: bytes) -> etree._Element:
    return el(f"<response xmlns='{ns.SASL}'>{base64.b64encode(payload).decode()}</response>")


def scram_login(
    neg: ServerNegotiation, password: str, *, empty_initial: bool = False
) -> list[Action]:
    client = scramp.ScramClient(["SCRAM-SHA-256"], "alice", password)
    if empty_initial:
        challenge = last_element(neg.receive(auth("SCRAM-SHA-256", b"")))
        assert challenge.tag == q(ns.SASL, "challenge") and challenge.text == "="
        actions = neg.receive(response(client.get_client_first().encode()))
    else:
        actions = neg.receive(auth("SCRAM-SHA-256", client.get_client_first().encode()))
    challenge = last_element(actions)
    assert challenge.tag == q(ns.SASL, "challenge")
    client.set_server_first(base64.b64decode(challenge.text or "").decode())
    actions = neg.receive(response(client.get_client_final().encode()))
    reply = last_element(actions)
    if reply.tag == q(ns.SASL, "success"):
        client.set_server_final(base64.b64decode(reply.text or "").decode())  # checks the server
    return actions


def test_full_negotiation_to_bind() -> None:
    neg = negotiation()
    actions = neg.stream_opened(HEADER)
    assert sent(actions).startswith(b"<?xml version='1.0'?><stream:stream ")
    features = last_element(actions)
    assert features.find(q(ns.BIND, "bind")) is None
    actions = scram_login(neg, "pw")
    assert last_element(actions).tag == q(ns.SASL, "success") and isinstance(actions[-1], Restart)
    assert (neg.user, neg.phase) == ("alice", Phase.HEADER)
    features = last_element(neg.stream_opened(HEADER))
    assert features.find(q(ns.BIND, "bind")) is not None
    bind = el(
        f"<iq xmlns='{ns.CLIENT}' type='set' id='b'><bind xmlns='{ns.BIND}'>"
        "<resource> phone </resource></bind></iq>"
    )
    assert neg.receive(bind) == [BindRequested("b", "phone")]
    result = last_element(neg.bound("b", JID("alice@localhost/phone")))
    assert result.get("type") == "result" and neg.phase is Phase.BOUND
    assert result.findtext(f"{q(ns.BIND, 'bind')}/{q(ns.BIND, 'jid')}") == "alice@localhost/phone"


def test_scram_with_empty_initial_response() -> None:
    neg = negotiation()
    neg.stream_opened(HEADER)
    assert last_element(scram_login(neg, "pw", empty_initial=True)).tag == q(ns.SASL, "success")


def test_wrong_password_counts_a_failure() -> None:
    neg = negotiation()
    neg.stream_opened(HEADER)
    failure = last_element(scram_login(neg, "nope"))
    assert failure.find(q(ns.SASL, "not-authorized")) is not None
    assert neg.auth_failures == 1 and neg.user is None


def test_sasl_error_conditions() -> None:
    neg = negotiation()
    neg.stream_opened(HEADER)
    bad = el(f"<auth xmlns='{ns.SASL}' mechanism='SCRAM-SHA-1'>!!notbase64</auth>")
    assert last_element(neg.receive(bad)).find(q(ns.SASL, "incorrect-encoding")) is not None
    unknown = auth("DIGEST-MD5", b"x")
    assert last_element(neg.receive(unknown)).find(q(ns.SASL, "invalid-mechanism")) is not None
    abort = el(f"<abort xmlns='{ns.SASL}'/>")
    assert last_element(neg.receive(abort)).find(q(ns.SASL, "aborted")) is not None
    stray = response(b"x")
    assert last_element(neg.receive(stray)).find(q(ns.SASL, "malformed-request")) is not None


def test_plain_authzid_must_match() -> None:
    neg = negotiation(allow_plain_without_tls=True)
    neg.stream_opened(HEADER)
    reply = last_element(neg.receive(auth("PLAIN", b"bob@localhost\0alice\0pw")))
    assert reply.find(q(ns.SASL, "invalid-authzid")) is not None
    reply = last_element(neg.receive(auth("PLAIN", b"alice@localhost\0alice\0pw")))
    assert reply.tag == q(ns.SASL, "success")


def test_starttls_flow_and_refusal() -> None:
    neg = negotiation(tls_offered=True, tls_required=True)
    features = last_element(neg.stream_opened(HEADER))
    assert features.find(f"{q(ns.TLS, 'starttls')}/{q(ns.TLS, 'required')}") is not None
    actions = neg.receive(el(f"<starttls xmlns='{ns.TLS}'/>"))
    assert last_element(actions).tag == q(ns.TLS, "proceed") and isinstance(actions[-1], StartTLS)
    neg.tls_established()
    features = last_element(neg.stream_opened(HEADER))
    assert features.find(q(ns.TLS, "starttls")) is None
    assert "PLAIN" in [m.text for m in features.iter(q(ns.SASL, "mechanism"))]

    plain = negotiation()
    plain.stream_opened(HEADER)
    actions = plain.receive(el(f"<starttls xmlns='{ns.TLS}'/>"))
    assert last_element(actions).tag == q(ns.TLS, "failure") and isinstance(actions[-1], Close)


def test_header_errors() -> None:
    for attrs, namespace, condition in [
        ({"to": "other.example", "version": "1.0"}, ns.CLIENT, "host-unknown"),
        ({"version": "1.0"}, ns.CLIENT, "host-unknown"),
        ({"to": "localhost"}, ns.CLIENT, "unsupported-version"),
        (HEADER, ns.SERVER, "invalid-namespace"),
    ]:
        neg = negotiation()
        actions = neg.stream_opened(attrs, namespace)
        error = last_element(actions)
        assert error.tag == q(ns.STREAM, "error")
        assert error[0].tag == q(ns.STREAMS_ERR, condition)
        assert isinstance(actions[-1], Close) and neg.error_condition == condition


def test_stream_error_before_header_sends_header_first() -> None:
    neg = negotiation()
    data = sent(neg.stream_error("not-well-formed"))
    assert data.startswith(b"<?xml") and data.endswith(b"</stream:stream>")
    assert b"not-well-formed" in data


def test_bind_get_is_refused_and_stanzas_need_auth() -> None:
    neg = negotiation()
    neg.stream_opened(HEADER)
    message = el(f"<message xmlns='{ns.CLIENT}' to='bob@localhost'/>")
    assert last_element(neg.receive(message))[0].tag == q(ns.STREAMS_ERR, "not-authorized")
    neg = negotiation()
    neg.stream_opened(HEADER)
    scram_login(neg, "pw")
    neg.stream_opened(HEADER)
    get = el(f"<iq xmlns='{ns.CLIENT}' type='get' id='g'><bind xmlns='{ns.BIND}'/></iq>")
    reply = last_element(neg.receive(get))
    assert reply.get("type") == "error" and reply.get("id") == "g"
