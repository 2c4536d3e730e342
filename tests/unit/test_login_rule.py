"""The one rule of the login, sans-IO: nothing of the account (no SASL of any kind, no bind)
before TLS is established and the certificate verified for the account's domain; plus the
pre-TLS header, the bound JID check, channel-binding choice and XEP-0474."""

from __future__ import annotations

import base64
import hashlib

import pytest
import scramp
from lxml import etree

from jet_trio import JID, DowngradeDetected, NoCommonMechanism, RemoteProtocolError
from jet_trio._xmpp.negotiation import (
    Action,
    ClientNegotiator,
    Negotiated,
    RestartStream,
    SendBytes,
    StartTLS,
    TLSError,
    TLSInfo,
)
from jet_trio._xmpp.xml import StanzaReceived, StreamOpened

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
STREAM_NS = "xmlns:stream='http://etherx.jabber.org/streams'"
OPEN = StreamOpened({"id": "s1", "version": "1.0", "from": "example.org"}, "jabber:client")
ACCOUNT = JID("alice@example.org/desk")
VERIFIED = TLSInfo("example.org", "TLSv1.3", (("tls-server-end-point", b"E" * 32),))
VERIFIED12 = TLSInfo(
    "example.org", "TLSv1.2", (("tls-unique", b"U" * 12), ("tls-server-end-point", b"E" * 32))
)


def el(xml: str) -> StanzaReceived:
    return StanzaReceived(etree.fromstring(xml))


def features(
    *mechs: str, starttls: bool = False, cb: tuple[str, ...] | None = None
) -> StanzaReceived:
    inner = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>" if starttls else ""
    if mechs:
        inner += f"<mechanisms xmlns='{SASL}'>"
        inner += "".join(f"<mechanism>{m}</mechanism>" for m in mechs) + "</mechanisms>"
    if cb is not None:
        inner += "<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>"
        inner += "".join(f"<channel-binding type='{t}'/>" for t in cb) + "</sasl-channel-binding>"
    return el(f"<stream:features {STREAM_NS}>{inner}</stream:features>")


BIND = el(
    f"<stream:features {STREAM_NS}><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
    "</stream:features>"
)


def sent(actions: list[Action]) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, SendBytes))


def auth_payload(actions: list[Action]) -> bytes:
    (auth,) = [etree.fromstring(a.data) for a in actions if isinstance(a, SendBytes)]
    assert auth.tag == f"{{{SASL}}}auth"
    return base64.b64decode(auth.text or "")


# -- the rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mechs", [("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"), ("SCRAM-SHA-1",), ("PLAIN",)]
)
def test_no_sasl_of_any_kind_without_tls(mechs: tuple[str, ...]) -> None:
    neg = ClientNegotiator(ACCOUNT, "pw")
    neg.receive(OPEN)
    with pytest.raises(TLSError, match="STARTTLS"):
        neg.receive(features(*mechs))


def test_plain_target_must_do_starttls_even_when_scram_is_offered() -> None:
    neg = ClientNegotiator(ACCOUNT, "pw")
    neg.receive(OPEN)
    assert b"<starttls" in sent(neg.receive(features("SCRAM-SHA-1", starttls=True)))


@pytest.mark.parametrize(
    ("info", "match"),
    [
        (TLSInfo(None, "TLSv1.3"), "did not verify"),
        (TLSInfo("evil.example", "TLSv1.3"), "checked for evil.example"),
    ],
)
def test_unverified_or_other_name_tls_gets_nothing(info: TLSInfo, match: str) -> None:
    direct = ClientNegotiator(ACCOUNT, "pw", tls=info)
    direct.receive(OPEN)
    with pytest.raises(TLSError, match=match):
        direct.receive(features("SCRAM-SHA-256", "PLAIN"))
    starttls = ClientNegotiator(ACCOUNT, "pw")
    starttls.receive(OPEN)
    starttls.receive(features(starttls=True))
    assert starttls.receive(el("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")) == [
        StartTLS()
    ]
    with pytest.raises(TLSError, match=match):
        starttls.tls_established(info)


def test_bind_features_before_tls_are_refused() -> None:
    """A server skipping SASL and offering bind on a plain stream gets no bind either."""
    neg = ClientNegotiator(ACCOUNT, "pw", insecure_plaintext_for_tests=True)
    neg._authenticated = True  # as if a (test-only) login had happened
    neg._insecure = False
    neg.receive(OPEN)
    with pytest.raises(TLSError):
        neg.receive(BIND)


def test_test_only_opt_out_allows_scram_but_never_plain() -> None:
    neg = ClientNegotiator(ACCOUNT, "pw", insecure_plaintext_for_tests=True)
    neg.receive(OPEN)
    assert auth_payload(neg.receive(features("SCRAM-SHA-1", "PLAIN"))).startswith(b"n,,n=alice")
    plain = ClientNegotiator(ACCOUNT, "pw", insecure_plaintext_for_tests=True)
    plain.receive(OPEN)
    with pytest.raises(NoCommonMechanism, match="refusing"):
        plain.receive(features("PLAIN"))


def test_no_account_in_the_pre_tls_header() -> None:
    neg = ClientNegotiator(ACCOUNT, "pw")
    (first,) = neg.start()
    assert isinstance(first, SendBytes)
    assert b"alice" not in first.data and b"to='example.org'" in first.data.replace(b'"', b"'")
    neg.receive(OPEN)
    neg.receive(features(starttls=True))
    neg.receive(el("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"))
    after = neg.tls_established(VERIFIED)
    assert isinstance(after[0], RestartStream)
    assert b"alice@example.org" in sent(after)


# -- bound JID -----------------------------------------------------------------------------------


def logged_in() -> tuple[ClientNegotiator, str]:
    neg = ClientNegotiator(ACCOUNT, "pw", tls=VERIFIED, mechanisms=["PLAIN"])
    neg.receive(OPEN)
    neg.receive(features("PLAIN"))
    neg.receive(el(f"<success xmlns='{SASL}'/>"))
    neg.receive(OPEN)
    (iq,) = [etree.fromstring(a.data) for a in neg.receive(BIND) if isinstance(a, SendBytes)]
    return neg, iq.get("id", "")


def bind_result(iq_id: str, jid: str) -> StanzaReceived:
    return el(
        f"<iq xmlns='jabber:client' type='result' id='{iq_id}'>"
        f"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>{jid}</jid></bind></iq>"
    )


@pytest.mark.parametrize(
    "bound", ["mallory@example.org/desk", "alice@evil.example/desk", "alice@example.org"]
)
def test_bound_jid_must_be_the_account(bound: str) -> None:
    neg, iq_id = logged_in()
    with pytest.raises(RemoteProtocolError, match="bound"):
        neg.receive(bind_result(iq_id, bound))


def test_bound_jid_with_other_resource_is_fine() -> None:
    neg, iq_id = logged_in()
    (done,) = neg.receive(bind_result(iq_id, "alice@example.org/other"))
    assert isinstance(done, Negotiated) and done.jid == JID("alice@example.org/other")


# -- channel binding choice ----------------------------------------------------------------------


def first_gs2(info: TLSInfo, *mechs: str, cb: tuple[str, ...] | None = None) -> tuple[str, bytes]:
    neg = ClientNegotiator(ACCOUNT, "pw", tls=info)
    neg.receive(OPEN)
    payload = auth_payload(neg.receive(features(*mechs, cb=cb)))
    assert neg.mechanism is not None
    return neg.mechanism, payload.split(b"n=")[0]


@pytest.mark.parametrize(
    ("info", "mechs", "cb", "expected"),
    [
        # TLS 1.3, no XEP-0440: the default tls-exporter cannot be computed: no binding, "n"
        (VERIFIED, ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"), None, ("SCRAM-SHA-256", b"n,,")),
        # TLS 1.3, XEP-0440 names tls-server-end-point
        (
            VERIFIED,
            ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"),
            ("tls-exporter", "tls-server-end-point"),
            ("SCRAM-SHA-256-PLUS", b"p=tls-server-end-point,,"),
        ),
        # TLS 1.2, no XEP-0440: RFC 5802's default tls-unique
        (
            VERIFIED12,
            ("SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"),
            None,
            ("SCRAM-SHA-1-PLUS", b"p=tls-unique,,"),
        ),
        # XEP-0440 decides
        (
            VERIFIED12,
            ("SCRAM-SHA-256-PLUS",),
            ("tls-server-end-point",),
            ("SCRAM-SHA-256-PLUS", b"p=tls-server-end-point,,"),
        ),
        # no -PLUS offered: "y" (I could bind): a binding server then refuses the downgrade
        (VERIFIED, ("SCRAM-SHA-256",), None, ("SCRAM-SHA-256", b"y,,")),
        # the server binds only to types we cannot compute: honest "n"
        (
            VERIFIED,
            ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"),
            ("tls-exporter",),
            ("SCRAM-SHA-256", b"n,,"),
        ),
    ],
)
def test_channel_binding_choice(
    info: TLSInfo, mechs: tuple[str, ...], cb: tuple[str, ...] | None, expected: tuple[str, bytes]
) -> None:
    assert first_gs2(info, *mechs, cb=cb) == expected


def test_plus_exchange_against_scramp_server() -> None:
    data = b"E" * 32
    m = scramp.ScramMechanism("SCRAM-SHA-256-PLUS")
    auth_info = m.make_auth_info("pw", iteration_count=4096)
    server = m.make_server(lambda _: auth_info, channel_binding=("tls-server-end-point", data))
    neg = ClientNegotiator(ACCOUNT, "pw", tls=VERIFIED)
    neg.receive(OPEN)
    server.set_client_first(
        auth_payload(
            neg.receive(features("SCRAM-SHA-256-PLUS", cb=("tls-server-end-point",)))
        ).decode()
    )
    first = base64.b64encode(server.get_server_first().encode()).decode()
    (resp,) = [
        etree.fromstring(a.data)
        for a in neg.receive(el(f"<challenge xmlns='{SASL}'>{first}</challenge>"))
        if isinstance(a, SendBytes)
    ]
    server.set_client_final(base64.b64decode(resp.text or "").decode())  # binding checked
    final = base64.b64encode(server.get_server_final().encode()).decode()
    assert isinstance(
        neg.receive(el(f"<success xmlns='{SASL}'>{final}</success>"))[0], RestartStream
    )
    assert neg.channel_binding == "tls-server-end-point"


# -- XEP-0474 ------------------------------------------------------------------------------------


def ssdp(mechs: list[str], cb: list[str] | None) -> str:
    text = "\x1e".join(sorted(mechs))
    if cb is not None:
        text += "\x1f" + "\x1e".join(sorted(cb))
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


@pytest.mark.parametrize(
    ("server_saw", "ok"),
    [
        ((["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"], ["tls-server-end-point"]), True),
        (
            (
                ["SCRAM-SHA-512-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"],
                ["tls-server-end-point"],
            ),
            False,
        ),
        (
            (["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"], ["tls-exporter", "tls-server-end-point"]),
            False,
        ),
    ],
)
def test_xep0474_hash_checked(server_saw: tuple[list[str], list[str]], ok: bool) -> None:
    neg = ClientNegotiator(ACCOUNT, "pw", tls=VERIFIED)
    neg.receive(OPEN)
    client_first = auth_payload(
        neg.receive(features("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", cb=("tls-server-end-point",)))
    ).decode()
    nonce = client_first.split("r=")[1]
    salt = base64.b64encode(b"sixteen-byte-slt").decode()
    server_first = f"r={nonce}srv,s={salt},i=4096,h={ssdp(*server_saw)}"
    challenge = el(
        f"<challenge xmlns='{SASL}'>{base64.b64encode(server_first.encode()).decode()}</challenge>"
    )
    if ok:
        assert b"<response" in sent(neg.receive(challenge))
    else:
        with pytest.raises(DowngradeDetected):
            neg.receive(challenge)
