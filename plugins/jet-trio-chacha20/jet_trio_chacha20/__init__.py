"""ChaCha20-Poly1305 (RFC 8439) as a streaming jet-trio cipher.

``cryptography`` offers ChaCha20-Poly1305 only as a one-shot AEAD, so the AEAD is built here
incrementally from its ``ChaCha20`` stream cipher and ``Poly1305`` MAC, exactly as RFC 8439
section 2.8 composes them (no associated data). The output is byte for byte what
``ChaCha20Poly1305(key).encrypt(nonce, data, None)`` returns.

The URN is this project's own: no XEP defines a ChaCha20 cipher for JET, so only peers running
this plugin will pick it.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from jet_trio.plugin import Cipher, StreamDecryptor, StreamEncryptor, TagMismatch, hookimpl

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import Cipher as _CryptoCipher

# ``cryptography`` is imported when a key is first used, not with the entry point: the plugin
# manager loads this module in every process, also for unencrypted transfers.

__all__ = ["CHACHA20_POLY1305", "URN", "ChaCha20Poly1305Cipher", "jet_register_ciphers"]

URN = "urn:jet-trio:ciphers:chacha20-poly1305:0"

_BLOCK = 64
# The 32-bit block counter starts at 1 (block 0 makes the Poly1305 key).
_MAX_PLAINTEXT = (2**32 - 1) * _BLOCK


def _chacha20(key: bytes, nonce: bytes, counter: int) -> _CryptoCipher[None]:
    from cryptography.hazmat.primitives.ciphers import Cipher as _CryptoCipher
    from cryptography.hazmat.primitives.ciphers import algorithms

    # cryptography takes the RFC 7539 layout: 32-bit little-endian counter ‖ 96-bit nonce.
    return _CryptoCipher(algorithms.ChaCha20(key, struct.pack("<I", counter) + nonce), mode=None)


class _Aead:
    __slots__ = ("_ctx", "_length", "_mac")

    def __init__(self, key: bytes, nonce: bytes, *, encrypt: bool) -> None:
        from cryptography.hazmat.primitives.poly1305 import Poly1305

        one_time_key = _chacha20(key, nonce, 0).encryptor().update(bytes(32))
        self._mac = Poly1305(one_time_key)
        stream = _chacha20(key, nonce, 1)
        self._ctx = stream.encryptor() if encrypt else stream.decryptor()
        self._length = 0

    def _mac_trailer(self) -> None:
        # AAD is empty: no AAD block, then pad16(ciphertext) ‖ le64(0) ‖ le64(len(ciphertext)).
        self._mac.update(bytes(-self._length % 16) + struct.pack("<QQ", 0, self._length))


class _Encryptor(_Aead):
    __slots__ = ()

    def __init__(self, key: bytes, nonce: bytes) -> None:
        super().__init__(key, nonce, encrypt=True)

    def update(self, data: bytes | bytearray | memoryview, /) -> bytes:
        ciphertext = self._ctx.update(data)
        self._mac.update(ciphertext)
        self._length += len(ciphertext)
        return ciphertext

    def finalize(self) -> bytes:
        self._mac_trailer()
        return self._mac.finalize()


class _Decryptor(_Aead):
    __slots__ = ()

    def __init__(self, key: bytes, nonce: bytes) -> None:
        super().__init__(key, nonce, encrypt=False)

    def update(self, data: bytes | bytearray | memoryview, /) -> bytes:
        self._mac.update(data)
        self._length += len(data)
        return self._ctx.update(data)

    def finalize(self, tag: bytes, /) -> None:
        from cryptography.exceptions import InvalidSignature

        self._mac_trailer()
        try:
            self._mac.verify(tag)
        except InvalidSignature:
            raise TagMismatch(
                "ChaCha20-Poly1305 authentication tag mismatch: the file was altered in transit, "
                "or the key or nonce is wrong"
            ) from None


class ChaCha20Poly1305Cipher(Cipher):
    """ChaCha20-Poly1305 with a 32-byte key, a 12-byte nonce (the JET IV) and a 16-byte tag."""

    urn = URN
    key_size = 32
    iv_size = 12
    accepted_iv_sizes = frozenset({12})
    tag_size = 16
    max_plaintext_size = _MAX_PLAINTEXT

    def new_encryptor(self, key: bytes, iv: bytes) -> StreamEncryptor:
        return _Encryptor(key, iv)

    def new_decryptor(self, key: bytes, iv: bytes) -> StreamDecryptor:
        return _Decryptor(key, iv)


CHACHA20_POLY1305 = ChaCha20Poly1305Cipher()


@hookimpl
def jet_register_ciphers() -> list[Cipher]:
    """Register ChaCha20-Poly1305 with jet-trio."""
    return [CHACHA20_POLY1305]
