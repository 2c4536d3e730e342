"""The <security> element codec, against the spec's shape and a real Dino capture."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from jet_trio._jet.cipher import UnknownCipher
from jet_trio._jet.element import SecurityElementError, build_security, parse_security
from jet_trio._jingle.message import JingleProtocolError, content_security, parse_jingle
from jet_trio._plugins.builtin_ciphers import AES128GCM, AES256GCM
from jet_trio._plugins.manager import PluginManager
from jet_trio._xmpp import ns as _ns
from jet_trio._xmpp.jid import JID

FIXTURES = Path(__file__).parent.parent / "fixtures" / "dino"
AXOLOTL = "eu.siacs.conversations.axolotl"


@pytest.fixture(scope="module")
def plugins() -> PluginManager:
    return PluginManager(entry_points=False)


def _xml(text: str) -> etree._Element:
    return etree.fromstring(text)


def _envelope(ns: str = _ns.JET_STUB) -> etree._Element:
    return _xml(f"<encrypted xmlns='{ns}'><payload>AAAA</payload></encrypted>")


def _jingle(inner: str) -> etree._Element:
    return _xml(f"<jingle xmlns='{_ns.JINGLE}' action='session-initiate' sid='s1'>{inner}</jingle>")


PEER = JID("romeo@example.net/orchard")


def find_security(jingle: etree._Element, content_name: str) -> etree._Element | None:
    """The one ``<security>`` lookup the service uses: parse the message, then
    :func:`content_security` for the named content (``None`` if there is no such content)."""
    msg = parse_jingle(jingle, PEER)
    content = next((c for c in msg.contents if c.name == content_name), None)
    return None if content is None else content_security(msg, content)


SEC = (
    "<security xmlns='urn:xmpp:jingle:jet:0' {attrs}>"
    "<encrypted xmlns='urn:xmpp:encryption:stub:0'><payload>AAAA</payload></encrypted>"
    "</security>"
)


def test_dino_capture(plugins: PluginManager) -> None:
    first = (FIXTURES / "dino2dino_jet_omemo_s5b.xml").read_text().splitlines()[0]
    iq = _xml(first)
    jingle = iq.find(f"{{{_ns.JINGLE}}}jingle")
    assert jingle is not None
    sec = find_security(jingle, "a-file-offer")
    assert sec is not None
    info = parse_security(sec, plugins)
    assert info.name is None  # Dino sends no name
    assert info.cipher is AES128GCM
    assert info.envelope_type == AXOLOTL
    assert info.envelope.tag == f"{{{AXOLOTL}}}encrypted"
    header = info.envelope.find(f"{{{AXOLOTL}}}header")
    assert header is not None and header.get("sid") == "64371059"
    # The other contents have no security element.
    assert find_security(jingle, "another-content") is None


def test_build_then_parse(plugins: PluginManager) -> None:
    el = build_security("a-file-offer", AES256GCM, _envelope())
    assert el.tag == f"{{{_ns.JET}}}security"
    assert el.get("name") == "a-file-offer"
    assert el.get("cipher") == "urn:xmpp:ciphers:aes-256-gcm-nopadding"  # no ":0" on the wire
    assert el.get("type") == _ns.JET_STUB
    assert el.nsmap.get(None) == _ns.JET
    info = parse_security(_xml(etree.tostring(el).decode()), plugins)
    assert (info.name, info.cipher, info.envelope_type) == ("a-file-offer", AES256GCM, _ns.JET_STUB)


def test_build_refuses_envelope_without_namespace() -> None:
    with pytest.raises(ValueError, match="no namespace"):
        build_security("c", AES128GCM, etree.Element("encrypted"))


@pytest.mark.parametrize(
    ("urn", "cipher"),
    [
        ("urn:xmpp:ciphers:aes-128-gcm-nopadding", AES128GCM),
        ("urn:xmpp:ciphers:aes-128-gcm-nopadding:0", AES128GCM),
        ("urn:xmpp:ciphers:aes-256-gcm-nopadding:0", AES256GCM),  # Smack
    ],
)
def test_cipher_with_or_without_version(plugins: PluginManager, urn: str, cipher: object) -> None:
    el = _xml(SEC.format(attrs=f"cipher='{urn}' type='{_ns.JET_STUB}'"))
    assert parse_security(el, plugins).cipher is cipher


def test_unknown_cipher(plugins: PluginManager) -> None:
    el = _xml(SEC.format(attrs=f"cipher='urn:xmpp:ciphers:rot13' type='{_ns.JET_STUB}'"))
    with pytest.raises(UnknownCipher, match=r"rot13.*supported: urn:xmpp:ciphers:aes-128"):
        parse_security(el, plugins)


@pytest.mark.parametrize(
    ("attrs", "match"),
    [
        (f"type='{_ns.JET_STUB}'", "no cipher"),
        ("cipher='urn:xmpp:ciphers:aes-128-gcm-nopadding'", "no type"),
        (
            "cipher='urn:xmpp:ciphers:aes-128-gcm-nopadding' type='urn:other'",
            "no envelope element of type 'urn:other'",
        ),
    ],
)
def test_malformed(plugins: PluginManager, attrs: str, match: str) -> None:
    with pytest.raises(SecurityElementError, match=match):
        parse_security(_xml(SEC.format(attrs=attrs)), plugins)


def test_not_a_security_element(plugins: PluginManager) -> None:
    with pytest.raises(SecurityElementError, match="expected JET <security>"):
        parse_security(_envelope(), plugins)


def test_two_envelopes(plugins: PluginManager) -> None:
    el = build_security("c", AES128GCM, _envelope())
    el.append(_envelope())
    with pytest.raises(SecurityElementError, match="several envelopes"):
        parse_security(el, plugins)


def test_find_under_jingle_conversations_bug() -> None:
    sec = SEC.format(attrs=f"name='c1' cipher='x' type='{_ns.JET_STUB}'")
    jingle = _jingle(
        f"<content name='c1' creator='initiator'/><content name='c2' creator='initiator'/>{sec}"
    )
    found = find_security(jingle, "c1")
    assert found is not None and found.get("name") == "c1"
    assert find_security(jingle, "c2") is None


def test_find_unnamed_under_jingle_only_with_one_content() -> None:
    sec = SEC.format(attrs=f"cipher='x' type='{_ns.JET_STUB}'")
    assert (
        find_security(_jingle(f"<content name='c1' creator='initiator'/>{sec}"), "c1") is not None
    )
    two = _jingle(
        f"<content name='c1' creator='initiator'/><content name='c2' creator='initiator'/>{sec}"
    )
    with pytest.raises(JingleProtocolError, match="without a name, and several contents"):
        find_security(two, "c1")  # fails closed: never read as "not encrypted"


def test_find_in_content_and_under_jingle_is_ambiguous() -> None:
    inside = SEC.format(attrs=f"name='c1' cipher='in' type='{_ns.JET_STUB}'")
    outside = SEC.format(attrs=f"name='c1' cipher='out' type='{_ns.JET_STUB}'")
    both = _jingle(f"<content name='c1' creator='initiator'>{inside}</content>{outside}")
    with pytest.raises(JingleProtocolError, match="ambiguous"):
        find_security(both, "c1")


def test_find_duplicates_are_errors() -> None:
    sec = SEC.format(attrs=f"cipher='x' type='{_ns.JET_STUB}'")
    with pytest.raises(JingleProtocolError, match="more than one <security/>"):
        find_security(_jingle(f"<content name='c1' creator='initiator'>{sec}{sec}</content>"), "c1")
    named = SEC.format(attrs=f"name='c1' cipher='x' type='{_ns.JET_STUB}'")
    with pytest.raises(JingleProtocolError, match="ambiguous"):
        find_security(_jingle(f"<content name='c1' creator='initiator'/>{named}{named}"), "c1")
