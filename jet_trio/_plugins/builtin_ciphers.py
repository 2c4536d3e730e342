"""The XEP-0391 ciphers: AES-128-GCM and AES-256-GCM on ``cryptography``.

Registered through the ``jet_register_ciphers`` hook like any third-party cipher (entry point
``builtin-ciphers`` in the ``jet_trio`` group).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._jet.cipher import Cipher, StreamDecryptor, StreamEncryptor, TagMismatch
from .._xmpp import ns as _ns
from .hookspecs import hookimpl

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import CipherContext

# ``cryptography`` (~8 MiB of memory, tens of milliseconds) is imported when a key is first used:
# the plugin manager loads this module in every process, also for unencrypted transfers.

__all__ = ["AES128GCM", "AES256GCM", "AESGCMCipher", "jet_register_ciphers"]

_GCM_TAG = 16
_BLOCK = 16  # AES
# NIST SP 800-38D: at most 2**39 - 256 bits of plaintext per (key, IV).
_GCM_MAX_PLAINTEXT = 2**36 - 32


class _GCMEncryptor:
    __slots__ = ("_ctx",)

    def __init__(self, key: bytes, iv: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher as _CryptoCipher
        from cryptography.hazmat.primitives.ciphers import algorithms, modes

        self._ctx = _CryptoCipher(algorithms.AES(key), modes.GCM(iv)).encryptor()

    def update(self, data: bytes | bytearray | memoryview, /) -> bytes:
        return self._ctx.update(data)

    def finalize(self) -> bytes:
        rest = self._ctx.finalize()
        assert not rest  # GCM is a stream mode: update() already returned everything
        return self._ctx.tag


class _GCMDecryptor:
    __slots__ = ("_ctx",)

    def __init__(self, key: bytes, iv: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher as _CryptoCipher
        from cryptography.hazmat.primitives.ciphers import algorithms, modes

        self._ctx: CipherContext = _CryptoCipher(algorithms.AES(key), modes.GCM(iv)).decryptor()

    def update(self, data: bytes | bytearray | memoryview, /) -> bytes:
        return self._ctx.update(data)

    def update_into(self, data: bytes | bytearray | memoryview, out: memoryview, /) -> int:
        if len(out) >= len(data) + _BLOCK - 1:  # what every cryptography version accepts
            return self._ctx.update_into(data, out)
        plain = self._ctx.update(data)
        out[: len(plain)] = plain
        return len(plain)

    def finalize(self, tag: bytes, /) -> None:
        from cryptography.exceptions import InvalidTag

        try:
            rest = self._ctx.finalize_with_tag(tag)  # type: ignore[attr-defined]
        except InvalidTag:
            raise TagMismatch(
                "AES-GCM authentication tag mismatch: the file was altered in transit, "
                "or the key or IV is wrong"
            ) from None
        assert not rest


class AESGCMCipher(Cipher):
    """AES-GCM without padding; 12-byte IVs generated, 12- and 16-byte IVs accepted."""

    iv_size = 12
    accepted_iv_sizes = frozenset({12, 16})
    tag_size = _GCM_TAG
    max_plaintext_size = _GCM_MAX_PLAINTEXT

    def __init__(self, key_size: int, urn: str) -> None:
        self.key_size = key_size
        self.urn = urn
        self.aliases = (urn + ":0",)

    def new_encryptor(self, key: bytes, iv: bytes) -> StreamEncryptor:
        return _GCMEncryptor(key, iv)

    def new_decryptor(self, key: bytes, iv: bytes) -> StreamDecryptor:
        return _GCMDecryptor(key, iv)


AES128GCM = AESGCMCipher(16, _ns.CIPHER_AES128_GCM)
AES256GCM = AESGCMCipher(32, _ns.CIPHER_AES256_GCM)


@hookimpl
def jet_register_ciphers() -> list[Cipher]:
    return [AES128GCM, AES256GCM]
