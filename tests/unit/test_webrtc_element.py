"""The webrtc-datachannel transport element (Conversations' dialect), the XEP-0215 services
codec and the transport's configuration checks: sans-IO, no network."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from lxml import etree

from jet_trio._transports import webrtc_element as we
from jet_trio._transports.webrtc import IceServer, NoRelayServer, WebRTCConfig
from jet_trio._xmpp.extdisco import ExternalServiceError, build_services_query, parse_services

FIXTURES = Path(__file__).parent.parent / "fixtures" / "webrtc"
FP = ":".join(["AB"] * 32)


def fixture(name: str) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True)
    return etree.parse(str(FIXTURES / name), parser).getroot()


def el(xml: str) -> etree._Element:
    return etree.fromstring(xml)


def transport(inner: str = "", *, outer_attrs: str = 'sctp-port="5000" max-message-size="262144"',
              ice_attrs: str = 'ufrag="8hhy" pwd="asd88fgpdd777uzjYhagZg4a"',
              fingerprint: bool = True) -> etree._Element:  # fmt: skip
    fp = (
        f'<fingerprint xmlns="{we.DTLS_NS}" hash="sha-256" setup="actpass">{FP}</fingerprint>'
        if fingerprint
        else ""
    )
    return el(
        f'<transport xmlns="{we.WEBRTC_DATACHANNEL_NS}" {outer_attrs}>'
        f'<transport xmlns="{we.ICE_UDP_NS}" {ice_attrs}>{fp}{inner}</transport></transport>'
    )


def candidate(**overrides: str) -> str:
    attrs = {"component": "1", "foundation": "1962373914", "generation": "0", "id": "c1",
             "ip": "203.0.113.7", "port": "38455", "priority": "1686052607", "protocol": "udp",
             "type": "srflx"}  # fmt: skip
    attrs.update(overrides)
    return "<candidate " + " ".join(f'{k}="{v}"' for k, v in attrs.items()) + "/>"


def test_conversations_offer_fixture() -> None:
    info = we.parse_transport(fixture("conversations-offer.xml"))
    assert (info.sctp_port, info.max_message_size) == (5000, 262144)
    assert (info.ufrag, info.pwd) == ("8hhy", "asd88fgpdd777uzjYhagZg4a")
    assert info.fingerprints[0].hash == "sha-256"
    assert info.setup == "actpass"
    assert info.ice_options == ("trickle",)
    assert info.candidates == ()


def test_conversations_transport_info_fixture() -> None:
    offer = we.parse_transport(fixture("conversations-offer.xml"))
    (c,) = we.parse_trickle(fixture("conversations-transport-info.xml"), offer)
    assert (c.ip, c.port, c.type, c.rel_addr, c.rel_port) == (
        "203.0.113.7", 38455, "srflx", "192.168.1.20", 38455,
    )  # fmt: skip
    # The fingerprint-less wrapper is no offer: parse_transport refuses it.
    with pytest.raises(we.MissingFingerprint):
        we.parse_transport(fixture("conversations-transport-info.xml"))


def test_build_matches_conversations_shape_and_round_trips() -> None:
    offer = we.parse_transport(fixture("conversations-offer.xml"))
    built = we.build_transport(offer)
    # Canonical XML: attribute order does not matter on the wire.
    assert etree.tostring(built, method="c14n") == etree.tostring(
        fixture("conversations-offer.xml"), method="c14n"
    )
    assert we.parse_transport(built) == offer


def test_trickle_infos_one_candidate_each_without_fingerprint() -> None:
    c1 = we.IceCandidate("1", 1, "203.0.113.7", 1000, 100, "srflx", id="a")
    c2 = we.IceCandidate("2", 1, "192.0.2.1", 1001, 200, "host", id="b")
    offer = replace(we.parse_transport(fixture("conversations-offer.xml")), candidates=(c1, c2))
    infos = we.trickle_infos(offer)
    assert len(infos) == 2
    for info, c in zip(infos, (c1, c2), strict=True):
        assert info.find(f".//{{{we.DTLS_NS}}}fingerprint") is None
        assert we.parse_trickle(info, offer) == (c,)


def test_missing_fingerprint_is_refused() -> None:
    with pytest.raises(we.MissingFingerprint):
        we.parse_transport(transport(fingerprint=False))


def test_candidate_flood_is_refused() -> None:
    flood = "".join(candidate(id=f"c{i}", port=str(1000 + i)) for i in range(we.MAX_CANDIDATES + 1))
    with pytest.raises(we.CandidateFlood):
        we.parse_transport(transport(flood))
    offer = we.parse_transport(transport())
    with pytest.raises(we.CandidateFlood):
        we.parse_trickle(transport(flood, fingerprint=False), offer)
    # The limit itself is fine.
    ok = "".join(candidate(id=f"c{i}", port=str(1000 + i)) for i in range(we.MAX_CANDIDATES))
    assert len(we.parse_transport(transport(ok)).candidates) == we.MAX_CANDIDATES


@pytest.mark.parametrize(
    "inner",
    [
        candidate(port="70000"),
        candidate(port="-1"),
        candidate(port="\uff11\uff12"),  # non-ASCII (fullwidth) digits
        candidate(ip="example.org"),
        candidate(ip="host.local"),
        candidate(priority="0"),
        candidate(component="0"),
        candidate(foundation="has space"),
        candidate(type="bogus"),
        candidate(id="a b"),
        candidate(**{"rel-addr": "nope"}),
        candidate(generation="99999999999"),
    ],
)
def test_malformed_candidate_attributes(inner: str) -> None:
    with pytest.raises(we.MalformedTransport):
        we.parse_transport(transport(inner))


@pytest.mark.parametrize(
    ("outer", "ice"),
    [
        ('sctp-port="0" max-message-size="1"', None),
        ('sctp-port="5000"', None),  # no max-message-size: Conversations requires it
        ('max-message-size="65536"', None),
        ('sctp-port="x" max-message-size="65536"', None),
        (None, 'ufrag="abc" pwd="asd88fgpdd777uzjYhagZg4a"'),  # ufrag too short
        (None, 'ufrag="8hhy" pwd="short"'),
        (None, 'ufrag="8h y" pwd="asd88fgpdd777uzjYhagZg4a"'),
        (None, 'pwd="asd88fgpdd777uzjYhagZg4a"'),
    ],
)
def test_malformed_transport_attributes(outer: str | None, ice: str | None) -> None:
    kwargs: dict[str, str] = {}
    if outer is not None:
        kwargs["outer_attrs"] = outer
    if ice is not None:
        kwargs["ice_attrs"] = ice
    with pytest.raises(we.MalformedTransport):
        we.parse_transport(transport(**kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fp",
    [
        f'<fingerprint xmlns="{we.DTLS_NS}" hash="md5" setup="actpass">{FP}</fingerprint>',
        f'<fingerprint xmlns="{we.DTLS_NS}" hash="sha-256" setup="actpass">AB:CD</fingerprint>',
        f'<fingerprint xmlns="{we.DTLS_NS}" hash="sha-256" setup="holdconn">{FP}</fingerprint>',
        f'<fingerprint xmlns="{we.DTLS_NS}" hash="sha-256">{FP}</fingerprint>',
        f'<fingerprint xmlns="{we.DTLS_NS}" hash="sha-256" setup="actpass">{"ZZ:" * 31}ZZ</fingerprint>',  # noqa: E501
    ],
)
def test_malformed_fingerprint(fp: str) -> None:
    with pytest.raises(we.MalformedTransport):
        we.parse_transport(transport(fp, fingerprint=False))


def test_tcp_candidates_are_skipped_like_conversations() -> None:
    info = we.parse_transport(transport(candidate(protocol="tcp") + candidate(id="u")))
    assert [c.id for c in info.candidates] == ["u"]


def test_trickle_with_another_ufrag_is_refused() -> None:
    offer = we.parse_transport(transport())
    other = transport(candidate(), ice_attrs='ufrag="zzzz" pwd="asd88fgpdd777uzjYhagZg4a"')
    with pytest.raises(we.MalformedTransport, match="ufrag"):
        we.parse_trickle(other, offer)


def test_not_a_webrtc_transport() -> None:
    with pytest.raises(we.MalformedTransport):
        we.parse_transport(el('<transport xmlns="urn:xmpp:jingle:transports:ibb:1" sid="x"/>'))
    with pytest.raises(we.MalformedTransport):  # two inner transports
        we.parse_transport(
            el(
                f'<transport xmlns="{we.WEBRTC_DATACHANNEL_NS}" sctp-port="1" max-message-size="1">'
                f'<transport xmlns="{we.ICE_UDP_NS}"/><transport xmlns="{we.ICE_UDP_NS}"/>'
                "</transport>"
            )
        )


def test_sdp_round_trip() -> None:
    c = we.IceCandidate("abc", 1, "198.51.100.2", 4000, 1694498815, "srflx", id="x",
                        rel_addr="10.0.0.2", rel_port=4000)  # fmt: skip
    offer = replace(we.parse_transport(fixture("conversations-offer.xml")), candidates=(c,))
    sdp = we.to_sdp(offer)
    assert "m=application 9 UDP/DTLS/SCTP webrtc-datachannel" in sdp
    assert f"a=fingerprint:sha-256 {offer.fingerprints[0].value}" in sdp
    assert "a=setup:actpass" in sdp and "a=sctp-port:5000" in sdp
    back = we.from_sdp(sdp)
    assert replace(back, candidates=()) == replace(offer, candidates=())
    (got,) = back.candidates
    assert replace(got, id="x") == c


def test_candidate_sdp_errors() -> None:
    with pytest.raises(we.MalformedTransport):
        we.candidate_from_sdp("candidate:1 1 udp 5")
    assert we.candidate_from_sdp("candidate:1 1 tcp 5 192.0.2.1 9 typ host tcptype active") is None


def test_config_checks() -> None:
    with pytest.raises(NoRelayServer):
        WebRTCConfig(ice_servers=(IceServer(("stun:192.0.2.1:3478",)),), relay_only=True)
    with pytest.raises(ValueError, match="username"):
        IceServer(("turn:192.0.2.1:3478",))
    with pytest.raises(ValueError, match="stun"):
        IceServer(("http://192.0.2.1",))
    WebRTCConfig(ice_servers=(IceServer(("turn:192.0.2.1",), "u", "p"),), relay_only=True)


EXT = "urn:xmpp:extdisco:2"


def test_extdisco_parse() -> None:
    services = parse_services(
        el(
            f'<services xmlns="{EXT}">'
            '<service type="stun" host="192.0.2.1" port="3478" transport="udp"/>'
            '<service type="turn" host="turn.example" port="3478" transport="udp" '
            'username="1700000000" password="c2VjcmV0" expires="2026-12-06T00:00:00Z" '
            'restricted="1"/></services>'
        )
    )
    assert [s.ice_url for s in services] == [
        "stun:192.0.2.1:3478", "turn:turn.example:3478?transport=udp",
    ]  # fmt: skip
    assert services[1].restricted and services[1].username == "1700000000"
    assert build_services_query("turn").get("type") == "turn"


@pytest.mark.parametrize(
    "service",
    [
        '<service type="stun" host="bad host" port="3478"/>',
        '<service type="stun" host="192.0.2.1" port="0"/>',
        '<service type="stun" host="192.0.2.1" port="x"/>',
        '<service type="stun" host="192.0.2.1" transport="sctp"/>',
        '<service host="192.0.2.1"/>',
        '<service type="turn" host="192.0.2.1" password="' + "x" * 2000 + '"/>',
    ],
)
def test_extdisco_malformed(service: str) -> None:
    with pytest.raises(ExternalServiceError):
        parse_services(el(f'<services xmlns="{EXT}">{service}</services>'))


def test_extdisco_flood() -> None:
    many = '<service type="stun" host="192.0.2.1"/>' * 33
    with pytest.raises(ExternalServiceError):
        parse_services(el(f'<services xmlns="{EXT}">{many}</services>'))
