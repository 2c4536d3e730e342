"""The plugin conformance kit (``jet_trio.testing.check_cipher`` / ``check_envelope_method``):
the built-in plugins pass it, deliberately broken plugins fail it with a message naming the rule."""

from __future__ import annotations

import pytest
from lxml import etree

from jet_trio import JID
from jet_trio._plugins.builtin_ciphers import AES128GCM, AES256GCM, AESGCMCipher
from jet_trio._plugins.stub_envelope import StubEnvelope
from jet_trio.plugin import (
    Cipher,
    DecryptedEnvelope,
    EnvelopeMethod,
    PluginConfig,
    StreamDecryptor,
    StreamEncryptor,
    TransportSecret,
    Trust,
)
from jet_trio.testing import ConformanceError, check_cipher, check_envelope_method


@pytest.mark.parametrize("cipher", [AES128GCM, AES256GCM], ids=lambda c: c.urn)
def test_builtin_ciphers_pass(cipher: Cipher) -> None:
    check_cipher(cipher)


class _TagIgnoringDecryptor:
    def __init__(self, inner: StreamDecryptor) -> None:
        self.inner = inner

    def update(self, data: bytes | bytearray | memoryview, /) -> bytes:
        return self.inner.update(data)

    def finalize(self, tag: bytes, /) -> None:
        pass  # the bug: the tag is never checked


class TagIgnoringCipher(AESGCMCipher):
    def __init__(self) -> None:
        super().__init__(32, "urn:example:broken:tag-ignoring")

    def new_decryptor(self, key: bytes, iv: bytes) -> StreamDecryptor:
        return _TagIgnoringDecryptor(super().new_decryptor(key, iv))


class _PaddingEncryptor:
    def __init__(self, inner: StreamEncryptor) -> None:
        self.inner = inner

    def update(self, data: bytes | bytearray | memoryview, /) -> bytes:
        out = self.inner.update(data)
        return out + b"\x00" if out else out  # the bug: one byte more than the plaintext

    def finalize(self) -> bytes:
        return self.inner.finalize()


class PaddingCipher(AESGCMCipher):
    def __init__(self) -> None:
        super().__init__(32, "urn:example:broken:padding")

    def new_encryptor(self, key: bytes, iv: bytes) -> StreamEncryptor:
        return _PaddingEncryptor(super().new_encryptor(key, iv))


class ShortTagCipher(AESGCMCipher):
    """Claims a 16-byte tag but its encryptor returns 12 bytes."""

    def __init__(self) -> None:
        super().__init__(32, "urn:example:broken:short-tag")

    def new_encryptor(self, key: bytes, iv: bytes) -> StreamEncryptor:
        inner = super().new_encryptor(key, iv)

        class Enc:
            def update(self, data: bytes | bytearray | memoryview, /) -> bytes:
                return inner.update(data)

            def finalize(self) -> bytes:
                return inner.finalize()[:12]

        return Enc()


def test_cipher_ignoring_the_tag_fails() -> None:
    with pytest.raises(ConformanceError, match=r"tag-ignoring.*with a changed tag succeeded"):
        check_cipher(TagIgnoringCipher())


def test_cipher_with_longer_ciphertext_fails() -> None:
    with pytest.raises(
        ConformanceError,
        match=r"padding.*streaming contract: encryptor.update\(\) of 1 bytes returned 2",
    ):
        check_cipher(PaddingCipher())


def test_cipher_with_wrong_tag_size_fails() -> None:
    with pytest.raises(ConformanceError, match="returned a tag of 12, not 16 bytes"):
        check_cipher(ShortTagCipher())


def test_cipher_without_tag_size_fails() -> None:
    class NoTagSize(Cipher):
        urn = "urn:example:broken:no-tag-size"
        key_size = 32
        iv_size = 12
        accepted_iv_sizes = frozenset({12})
        max_plaintext_size = 2**30

        def new_encryptor(self, key: bytes, iv: bytes) -> StreamEncryptor:
            return AES256GCM.new_encryptor(key, iv)

        def new_decryptor(self, key: bytes, iv: bytes) -> StreamDecryptor:
            return AES256GCM.new_decryptor(key, iv)

    with pytest.raises(ConformanceError, match="the attribute 'tag_size' is missing"):
        check_cipher(NoTagSize())


async def test_stub_envelope_passes_without_sender_authentication() -> None:
    await check_envelope_method(lambda config: StubEnvelope(), authenticates_sender=False)


async def test_stub_envelope_fails_as_an_authenticating_method() -> None:
    with pytest.raises(ConformanceError, match=r"trust is Trust\.NONE"):
        await check_envelope_method(lambda config: StubEnvelope(), transfer=False)


class UnboundStub(StubEnvelope):
    """Claims verified trust but reports the stanza's ``from`` as the sender."""

    async def decrypt(
        self, element: etree._Element, sender: JID, cipher: Cipher
    ) -> DecryptedEnvelope:
        got = await super().decrypt(element, sender, cipher)
        return DecryptedEnvelope(got.secret, got.sender_identity, Trust.VERIFIED)


async def test_envelope_not_binding_the_sender_fails() -> None:
    with pytest.raises(
        ConformanceError,
        match=r"sender binding: an envelope made by alice was accepted as coming from "
        r"carol@localhost",
    ):
        await check_envelope_method(lambda config: UnboundStub(), transfer=False)


async def test_envelope_replay_claim_is_checked() -> None:
    with pytest.raises(ConformanceError, match=r"the same envelope was accepted twice \(replay\)"):
        await check_envelope_method(
            lambda config: StubEnvelope(),
            authenticates_sender=False,
            prevents_replay=True,
            transfer=False,
        )


async def test_factory_must_return_an_envelope_method() -> None:
    def factory(config: PluginConfig) -> object:
        return object()

    with pytest.raises(ConformanceError, match=r"not a jet_trio\.plugin\.EnvelopeMethod"):
        await check_envelope_method(factory)  # type: ignore[arg-type]


class ClaimingStub(StubEnvelope):
    """Writes the sender into the envelope and believes it: binds the sender, authenticates
    nothing."""

    def __init__(self, me: JID) -> None:
        self.me = me

    async def encrypt(self, secret: TransportSecret, peer: JID) -> etree._Element:
        element = await super().encrypt(secret, peer)
        element.set("from", str(self.me.bare))
        return element

    async def decrypt(
        self, element: etree._Element, sender: JID, cipher: Cipher
    ) -> DecryptedEnvelope:
        got = await super().decrypt(element, sender, cipher)
        return DecryptedEnvelope(got.secret, JID(element.get("from", "")), Trust.VERIFIED)


async def test_unauthenticated_envelope_fails_the_tampering_check() -> None:
    def factory(config: PluginConfig) -> EnvelopeMethod:
        assert config.account is not None
        return ClaimingStub(config.account)

    with pytest.raises(
        ConformanceError,
        match="a tampered envelope was accepted with an altered key: the envelope is not "
        "authenticated",
    ):
        await check_envelope_method(factory, transfer=False)


class RaisingStub(ClaimingStub):
    async def decrypt(
        self, element: etree._Element, sender: JID, cipher: Cipher
    ) -> DecryptedEnvelope:
        got = await super().decrypt(element, sender, cipher)
        raise ValueError(f"bad padding in {got.secret!r}")  # not a SecurityError


async def test_envelope_raising_a_plain_exception_fails() -> None:
    def factory(config: PluginConfig) -> EnvelopeMethod:
        assert config.account is not None
        return RaisingStub(config.account)

    with pytest.raises(
        ConformanceError, match=r"decrypt\(\) of a valid envelope raised ValueError: bad padding"
    ):
        await check_envelope_method(factory, transfer=False)
