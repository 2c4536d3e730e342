"""AES-192-GCM as a jet-trio cipher: one pass, ciphertext as long as the plaintext, then the tag."""

from __future__ import annotations

from typing import Any

from jet_trio.plugin import Cipher, StreamDecryptor, StreamEncryptor, TagMismatch, hookimpl

URN = "urn:example:jet-trio-tutorial:aes-192-gcm:0"


def _gcm(key: bytes, iv: bytes) -> Any:
    # Imported here, not at the top: jet-trio imports every plugin in every process.
    from cryptography.hazmat.primitives.ciphers import Cipher as AES
    from cryptography.hazmat.primitives.ciphers import algorithms, modes

    return AES(algorithms.AES(key), modes.GCM(iv))


class _Encryptor:
    def __init__(self, key: bytes, iv: bytes) -> None:
        self._ctx = _gcm(key, iv).encryptor()

    def update(self, data: bytes | bytearray | memoryview, /) -> bytes:
        out: bytes = self._ctx.update(data)  # exactly as many bytes as data
        return out

    def finalize(self) -> bytes:
        self._ctx.finalize()
        tag: bytes = self._ctx.tag
        return tag


class _Decryptor:
    def __init__(self, key: bytes, iv: bytes) -> None:
        self._ctx = _gcm(key, iv).decryptor()

    def update(self, data: bytes | bytearray | memoryview, /) -> bytes:
        out: bytes = self._ctx.update(data)  # unverified until finalize() returned
        return out

    def finalize(self, tag: bytes, /) -> None:
        from cryptography.exceptions import InvalidTag

        try:
            self._ctx.finalize_with_tag(tag)
        except InvalidTag:
            # The typed error of the plugin API, not cryptography's own.
            raise TagMismatch(f"{URN}: the authentication tag does not match") from None


class AES192GCM(Cipher):
    urn = URN
    key_size = 24
    iv_size = 12
    accepted_iv_sizes = frozenset({12})
    tag_size = 16
    max_plaintext_size = 2**36 - 32  # the GCM limit for one (key, IV)

    def new_encryptor(self, key: bytes, iv: bytes) -> StreamEncryptor:
        return _Encryptor(key, iv)

    def new_decryptor(self, key: bytes, iv: bytes) -> StreamDecryptor:
        return _Decryptor(key, iv)


@hookimpl
def jet_register_ciphers() -> list[Cipher]:
    return [AES192GCM()]
