"""The JET-OMEMO envelope of a real Dino 0.4.2 session-initiate (captured on loopback), read
without any I/O."""

from __future__ import annotations

import base64
from pathlib import Path

import oldmemo.oldmemo
import pytest
from jet_trio._xmpp.xml import StanzaReceived, XMLStreamParser
from jet_trio.plugin import EnvelopeError
from lxml import etree

from jet_trio_omemo import OLDMEMO
from jet_trio_omemo._envelope import parse_oldmemo_header

CAPTURE = (
    Path(__file__).resolve().parents[3]
    / "tests"
    / "fixtures"
    / "dino"
    / "dino2dino_jet_omemo_s5b.xml"
)
JET = "urn:xmpp:jingle:jet:0"


def _security() -> etree._Element:
    text = CAPTURE.read_text(encoding="utf-8").splitlines()[0]
    iq = etree.fromstring(text.encode(), etree.XMLParser(resolve_entities=False, no_network=True))
    security = iq.find(f".//{{{JET}}}security")
    assert security is not None
    return security


def test_dino_security_element() -> None:
    security = _security()
    assert security.get("type") == OLDMEMO
    assert security.get("cipher") == "urn:xmpp:ciphers:aes-128-gcm-nopadding"
    assert security.get("name") is None  # Dino sends no name


def test_dino_key_transport_header() -> None:
    encrypted = _security()[0]
    header = parse_oldmemo_header(encrypted)
    assert header.sid == 64371059
    assert [k.rid for k in header.keys] == [980639778]
    assert header.keys[0].prekey is True
    assert header.iv == base64.b64decode("IqDZyFRSb4an1LCz")
    assert len(header.iv) == 12
    assert not header.has_payload  # key transport: no <payload>


def test_dino_prekey_message_parses_with_oldmemo() -> None:
    """The <key> is a libsignal PreKeyWhisperMessage that python-omemo's oldmemo reads."""
    key = parse_oldmemo_header(_security()[0]).keys[0]
    kex, authenticated = oldmemo.oldmemo.KeyExchangeImpl.parse(key.data, False)
    assert kex.pre_key_id > 0 and kex.signed_pre_key_id >= 0
    material = oldmemo.oldmemo.EncryptedKeyMaterialImpl.parse(authenticated, "bob@localhost", 1)
    assert material.device_id == 1
    # A 16-byte key + 8-byte truncated MAC under the ratchet's AES-CBC: 32 bytes of ciphertext.
    assert len(authenticated) > 8


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('sid="64371059"', 'sid="x"'),
        # str.isdigit() accepts these, int() refuses or misreads them: a typed error, no crash
        ('sid="64371059"', 'sid="\u00b2"'),
        ('rid="980639778"', 'rid="\uff11\uff12"'),
        ('sid="64371059"', 'sid="+64371059"'),
        ('rid="980639778"', 'rid=""'),
        ("<iv>IqDZyFRSb4an1LCz</iv>", "<iv>IqDZ</iv>"),
        ("<iv>IqDZyFRSb4an1LCz</iv>", "<iv>!!!!</iv>"),
        ("<iv>IqDZyFRSb4an1LCz</iv>", ""),
        ('prekey="true"', 'prekey="maybe"'),
    ],
)
def test_malformed_headers_are_refused(old: str, new: str) -> None:
    text = etree.tostring(_security()[0]).decode()
    assert old in text
    broken = etree.fromstring(text.replace(old, new).encode())
    with pytest.raises(EnvelopeError):
        parse_oldmemo_header(broken)


def test_capture_passes_the_hardened_parser() -> None:
    """The capture is what jet-trio's own stream parser accepts (no DOCTYPE, no entities)."""
    parser = XMLStreamParser()
    events = parser.feed(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
        b"version='1.0'>" + CAPTURE.read_text(encoding="utf-8").splitlines()[0].encode()
    )
    stanzas = [e.element for e in events if isinstance(e, StanzaReceived)]
    assert len(stanzas) == 1
    security = stanzas[0].find(f".//{{{JET}}}security")
    assert security is not None
    assert parse_oldmemo_header(security[0]).sid == 64371059
