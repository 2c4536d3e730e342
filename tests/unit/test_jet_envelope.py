"""The envelope interface, the sender check and the stub envelope."""

from __future__ import annotations

import base64
import logging
import os

import pytest
from lxml import etree

from jet_trio import JID, SecurityError
from jet_trio._jet.cipher import CipherError, TransportSecret
from jet_trio._jet.envelope import (
    DecryptedEnvelope,
    EnvelopeError,
    EnvelopeSenderMismatch,
    Trust,
    UntrustedEnvelope,
    check_envelope_sender,
)
from jet_trio._plugins.builtin_ciphers import AES128GCM, AES256GCM
from jet_trio._plugins.hookspecs import PluginConfig
from jet_trio._plugins.manager import PluginManager, UnknownEnvelope
from jet_trio._plugins.stub_envelope import StubEnvelope
from jet_trio._xmpp import ns as _ns

ROMEO = JID("romeo@montague.example/orchard")
JULIET = JID("juliet@capulet.example/balcony")


def _decrypted(identity: JID, trust: Trust = Trust.UNDECIDED) -> DecryptedEnvelope:
    return DecryptedEnvelope(TransportSecret.generate(AES128GCM), identity, trust)


def test_sender_check_accepts_same_bare_jid() -> None:
    check_envelope_sender(_decrypted(ROMEO.bare), ROMEO)
    check_envelope_sender(_decrypted(JID("romeo@montague.example/other")), ROMEO)


def test_sender_check_refuses_other_account() -> None:
    with pytest.raises(EnvelopeSenderMismatch, match=r"sent by juliet@capulet\.example.*romeo@"):
        check_envelope_sender(_decrypted(JULIET.bare), ROMEO)
    assert issubclass(EnvelopeSenderMismatch, SecurityError)


def test_sender_check_refuses_untrusted_key() -> None:
    with pytest.raises(UntrustedEnvelope, match="marked as untrusted"):
        check_envelope_sender(_decrypted(ROMEO.bare, Trust.UNTRUSTED), ROMEO)


@pytest.mark.parametrize("cipher", [AES128GCM, AES256GCM])
async def test_stub_roundtrip_and_wire_shape(
    cipher: object, caplog: pytest.LogCaptureFixture
) -> None:
    assert cipher is AES128GCM or cipher is AES256GCM
    stub = StubEnvelope()
    secret = TransportSecret.generate(cipher)
    with caplog.at_level(logging.WARNING, logger="jet_trio.stub_envelope"):
        el = await stub.encrypt(secret, JULIET)
    assert any("INSECURE" in r.getMessage() for r in caplog.records)
    text = etree.tostring(el).decode()
    assert text.startswith(f'<encrypted xmlns="{_ns.JET_STUB}"><payload>')
    payload = el.find(f"{{{_ns.JET_STUB}}}payload")
    assert payload is not None and payload.text is not None
    assert base64.b64decode(payload.text) == secret.key + secret.iv

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="jet_trio.stub_envelope"):
        got = await stub.decrypt(etree.fromstring(text), ROMEO, cipher)
    assert any("INSECURE" in r.getMessage() for r in caplog.records)
    assert got.secret == secret
    assert got.sender_identity == ROMEO.bare
    assert got.trust is Trust.NONE
    check_envelope_sender(got, ROMEO)


def _stub(payload: str) -> etree._Element:
    return etree.fromstring(
        f"<encrypted xmlns='{_ns.JET_STUB}'><payload>{payload}</payload></encrypted>"
    )


async def test_stub_decrypt_errors() -> None:
    stub = StubEnvelope()
    with pytest.raises(EnvelopeError, match="not valid base64"):
        await stub.decrypt(_stub("%%%"), ROMEO, AES128GCM)
    with pytest.raises(EnvelopeError, match="no <payload>"):
        await stub.decrypt(_stub(""), ROMEO, AES128GCM)
    with pytest.raises(EnvelopeError, match="oversized"):
        await stub.decrypt(_stub("A" * 2000), ROMEO, AES128GCM)
    with pytest.raises(EnvelopeError, match="expected <encrypted>"):
        await stub.decrypt(etree.Element("x"), ROMEO, AES128GCM)
    short = base64.b64encode(os.urandom(20)).decode()
    with pytest.raises(CipherError, match="20 bytes of key material"):
        await stub.decrypt(_stub(short), ROMEO, AES128GCM)


async def test_stub_accepts_a_16_byte_iv_and_whitespace() -> None:
    raw = os.urandom(16) + os.urandom(16)
    b64 = base64.b64encode(raw).decode()
    got = await StubEnvelope().decrypt(_stub(f"\n  {b64[:10]}\n {b64[10:]} "), ROMEO, AES128GCM)
    assert got.secret.to_bytes() == raw


def test_stub_refused_unless_enabled(caplog: pytest.LogCaptureFixture) -> None:
    off = PluginManager(entry_points=False)
    assert off.envelopes == []
    assert off.disco_features() == []
    with pytest.raises(UnknownEnvelope, match="stub envelope is disabled"):
        off.envelope(_ns.JET_STUB)
    with caplog.at_level(logging.WARNING, logger="jet_trio.stub_envelope"):
        on = PluginManager(PluginConfig(allow_stub_envelope=True), entry_points=False)
    assert any("stub envelope is enabled" in r.getMessage() for r in caplog.records)
    assert isinstance(on.envelope(_ns.JET_STUB), StubEnvelope)
    assert on.disco_features() == [_ns.JET_STUB_FEATURE, _ns.JET]
