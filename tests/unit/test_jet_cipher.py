"""Ciphers and the transport secret."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jet_trio import SecurityError
from jet_trio._jet.cipher import (
    Cipher,
    CipherError,
    PlaintextLimitExceeded,
    TagMismatch,
    TransportSecret,
    WeakTransportSecret,
)
from jet_trio._plugins.builtin_ciphers import AES128GCM, AES256GCM, AESGCMCipher


def test_builtin_cipher_parameters() -> None:
    assert AES128GCM.urn == "urn:xmpp:ciphers:aes-128-gcm-nopadding"
    assert AES128GCM.aliases == ("urn:xmpp:ciphers:aes-128-gcm-nopadding:0",)
    assert AES256GCM.urn == "urn:xmpp:ciphers:aes-256-gcm-nopadding"
    assert (AES128GCM.key_size, AES256GCM.key_size) == (16, 32)
    for c in (AES128GCM, AES256GCM):
        assert c.iv_size == 12
        assert c.accepted_iv_sizes == {12, 16}
        assert c.tag_size == 16
        assert c.max_plaintext_size == 2**36 - 32


@pytest.mark.parametrize("cipher", [AES128GCM, AES256GCM])
def test_generate_is_fresh_and_well_formed(cipher: Cipher) -> None:
    secrets = {TransportSecret.generate(cipher) for _ in range(50)}
    assert len(secrets) == 50
    for s in secrets:
        assert len(s.key) == cipher.key_size
        assert len(s.iv) == 12
        assert s.key[:12] != s.iv
        assert s.to_bytes() == s.key + s.iv


def test_repr_hides_key_material() -> None:
    s = TransportSecret.generate(AES256GCM)
    assert s.key.hex() not in repr(s)
    assert repr(s) == "<TransportSecret urn:xmpp:ciphers:aes-256-gcm-nopadding key=32B iv=12B>"


@pytest.mark.parametrize(("cipher", "iv_len"), [(AES128GCM, 12), (AES256GCM, 12), (AES128GCM, 16)])
def test_from_bytes_blob_roundtrip(cipher: Cipher, iv_len: int) -> None:
    key, iv = os.urandom(cipher.key_size), os.urandom(iv_len)
    s = TransportSecret.from_bytes(key + iv, cipher)
    assert (s.key, s.iv, s.cipher) == (key, iv, cipher)


def test_from_bytes_smack_shape() -> None:
    blob = os.urandom(44)  # Smack: 32-byte key + 12-byte IV in one payload
    s = TransportSecret.from_bytes(blob, AES256GCM)
    assert (s.key, s.iv) == (blob[:32], blob[32:])


def test_from_bytes_dino_shape() -> None:
    key, iv = os.urandom(16), os.urandom(12)  # Dino: key in the OMEMO key, IV in <iv>
    s = TransportSecret.from_bytes(key, AES128GCM, iv=iv)
    assert (s.key, s.iv) == (key, iv)


@pytest.mark.parametrize(
    ("data", "iv", "match"),
    [
        (b"k" * 16, b"\x01" * 11, "IV is 11 bytes"),
        (b"k" * 15, b"\x01" * 12, "15-byte key"),
        (b"k" * 27, None, "27 bytes of key material, 28 or 32 bytes"),
        (b"k" * 44, None, "44 bytes of key material"),
    ],
)
def test_from_bytes_errors(data: bytes, iv: bytes | None, match: str) -> None:
    with pytest.raises(CipherError, match=match):
        TransportSecret.from_bytes(data, AES128GCM, iv=iv)


def test_weak_secrets_refused() -> None:
    key = os.urandom(16)
    with pytest.raises(WeakTransportSecret, match="IV equals the key"):
        TransportSecret(key, key[:12], AES128GCM)
    with pytest.raises(WeakTransportSecret, match="IV equals the key"):
        TransportSecret(key, key, AES128GCM)  # Dino <= 0.2 style 16-byte IV, equal to the key
    with pytest.raises(WeakTransportSecret, match="key is all zero"):
        TransportSecret(bytes(16), os.urandom(12), AES128GCM)
    with pytest.raises(WeakTransportSecret, match="IV is all zero"):
        TransportSecret(key, bytes(12), AES128GCM)
    assert issubclass(WeakTransportSecret, SecurityError)


def test_wrong_key_length_refused() -> None:
    with pytest.raises(CipherError, match="key is 16 bytes, 32 bytes are required"):
        TransportSecret(os.urandom(16), os.urandom(12), AES256GCM)


@pytest.mark.parametrize("size", [0, 1, 16, 1000, 70_000])
@pytest.mark.parametrize("iv_len", [12, 16])
def test_streaming_matches_one_shot(size: int, iv_len: int) -> None:
    key, iv = os.urandom(32), os.urandom(iv_len)
    data = os.urandom(size)
    enc = AES256GCM.encryptor(key, iv)
    ct = b"".join(enc.update(data[i : i + 999]) for i in range(0, size, 999))
    tag = enc.finalize()
    assert ct + tag == AESGCM(key).encrypt(iv, data, None)
    dec = AES256GCM.decryptor(key, iv)
    pt = b"".join(dec.update(ct[i : i + 777]) for i in range(0, size, 777))
    dec.finalize(tag)
    assert pt == data


def test_decryptor_bad_tag() -> None:
    key, iv = os.urandom(16), os.urandom(12)
    ct = AESGCM(key).encrypt(iv, b"hello", None)
    dec = AES128GCM.decryptor(key, iv)
    dec.update(ct[:-16])
    with pytest.raises(TagMismatch):
        dec.finalize(ct[-16:-1] + bytes([ct[-1] ^ 1]))
    dec = AES128GCM.decryptor(key, iv)
    dec.update(ct[:-16])
    with pytest.raises(TagMismatch, match="tag is 15 bytes"):
        dec.finalize(ct[-16:-1])


def test_limit_counts_across_updates() -> None:
    class Tiny(AESGCMCipher):
        max_plaintext_size = 10

    tiny = Tiny(16, "urn:test:tiny")
    enc = tiny.encryptor(os.urandom(16), os.urandom(12))
    enc.update(b"12345")
    enc.update(b"12345")
    with pytest.raises(PlaintextLimitExceeded, match="new transport secret"):
        enc.update(b"1")
    dec = tiny.decryptor(os.urandom(16), os.urandom(12))
    with pytest.raises(PlaintextLimitExceeded):
        dec.update(b"x" * 11)


def test_finalize_twice_is_an_error() -> None:
    enc = AES128GCM.encryptor(os.urandom(16), os.urandom(12))
    enc.finalize()
    with pytest.raises(RuntimeError):
        enc.finalize()
    with pytest.raises(RuntimeError):
        enc.update(b"x")
