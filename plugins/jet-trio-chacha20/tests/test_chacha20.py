"""The streaming ChaCha20-Poly1305 against cryptography's one-shot AEAD."""

from __future__ import annotations

import os

import pytest
import trio
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from jet_trio._jet.cipher import CipherError, TagMismatch, TransportSecret
from jet_trio._jet.stream import DecryptingReceiveStream, EncryptingSendStream
from jet_trio._plugins.manager import PluginManager

from jet_trio_chacha20 import CHACHA20_POLY1305, URN

SIZES = [0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 1000, 4096, 65537, 300_001]
# Byte-by-byte updates only for the smaller sizes (slow otherwise).
SIZE_PIECE = [(s, p) for s in SIZES for p in (1, 7, 16, 64, 1000, 1 << 20) if p > 1 or s < 5000]


@pytest.mark.parametrize(("size", "piece"), SIZE_PIECE)
def test_encrypt_matches_one_shot(size: int, piece: int) -> None:
    key, nonce, data = os.urandom(32), os.urandom(12), os.urandom(size)
    enc = CHACHA20_POLY1305.encryptor(key, nonce)
    out = b"".join(enc.update(data[i : i + piece]) for i in range(0, size, piece))
    out += enc.finalize()
    assert out == ChaCha20Poly1305(key).encrypt(nonce, data, None)


@pytest.mark.parametrize("size", SIZES)
def test_decrypt_one_shot_ciphertext(size: int) -> None:
    key, nonce, data = os.urandom(32), os.urandom(12), os.urandom(size)
    wire = ChaCha20Poly1305(key).encrypt(nonce, data, None)
    dec = CHACHA20_POLY1305.decryptor(key, nonce)
    body = wire[:-16]
    got = b"".join(dec.update(body[i : i + 333]) for i in range(0, len(body), 333))
    dec.finalize(wire[-16:])
    assert got == data


@pytest.mark.parametrize("where", [0, 50, 99, 100, 115])
def test_tamper_detected(where: int) -> None:
    key, nonce = os.urandom(32), os.urandom(12)
    wire = bytearray(ChaCha20Poly1305(key).encrypt(nonce, os.urandom(100), None))
    wire[where] ^= 0x80
    dec = CHACHA20_POLY1305.decryptor(key, nonce)
    dec.update(bytes(wire[:-16]))
    with pytest.raises(TagMismatch):
        dec.finalize(bytes(wire[-16:]))


def test_wrong_nonce_length_refused() -> None:
    with pytest.raises(CipherError, match="IV is 16 bytes, 12 bytes are required"):
        TransportSecret(os.urandom(32), os.urandom(16), CHACHA20_POLY1305)


def test_limit_is_the_chacha20_counter_space() -> None:
    assert CHACHA20_POLY1305.max_plaintext_size == (2**32 - 1) * 64


async def test_stream_pipeline() -> None:
    secret = TransportSecret.generate(CHACHA20_POLY1305)
    plaintext = os.urandom(777_777)
    s, r = trio.testing.memory_stream_one_way_pair()
    enc = EncryptingSendStream(s, secret, expected_size=len(plaintext))
    dec = DecryptingReceiveStream(r, secret, expected_size=len(plaintext))
    got = bytearray()

    async def send() -> None:
        for i in range(0, len(plaintext), 50_000):
            await enc.send_all(plaintext[i : i + 50_000])
        await enc.finish()
        await enc.aclose()

    async def receive() -> None:
        while data := await dec.receive_some():
            got.extend(data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        nursery.start_soon(receive)
    assert got == plaintext
    assert dec.verified


def test_registered_through_plugin_manager() -> None:
    import jet_trio_chacha20

    pm = PluginManager(plugins=[jet_trio_chacha20], entry_points=False)
    assert pm.load_errors == []
    # The manager uses a third-party cipher through a guard (a bug is pinned on the plugin).
    cipher = pm.cipher(URN)
    assert isinstance(cipher, type(CHACHA20_POLY1305)) and cipher.urn == URN
