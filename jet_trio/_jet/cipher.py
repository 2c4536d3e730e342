"""The cipher interface of JET, and the transport secret (key ‖ IV).

A :class:`Cipher` describes one XEP-0391 cipher (its URN, key and IV sizes, tag size) and makes
incremental encryptors and decryptors. The wire format is the one every deployed client uses: the
ciphertext has the plaintext's length and is followed by one authentication tag.

Ciphers are registered by plugins through the ``jet_register_ciphers`` hook; the AES-GCM ones are
in :mod:`jet_trio._plugins.builtin_ciphers`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Protocol, final

from .._errors import SecurityError

__all__ = [
    "Cipher",
    "CipherError",
    "PlaintextLimitExceeded",
    "StreamDecryptor",
    "StreamEncryptor",
    "TagMismatch",
    "TransportSecret",
    "UnknownCipher",
    "WeakTransportSecret",
]


class CipherError(SecurityError):
    """Key material or cipher parameters that cannot be used (wrong length, malformed)."""


class WeakTransportSecret(CipherError):
    """A transport secret that must not be used (key reused as IV, all-zero key or IV)."""


class UnknownCipher(SecurityError):
    """The peer asked for a cipher no loaded plugin provides."""

    def __init__(self, urn: str, known: tuple[str, ...] = ()) -> None:
        hint = f" (supported: {', '.join(known)})" if known else ""
        super().__init__(f"unsupported JET cipher {urn!r}{hint}")
        self.urn = urn


class PlaintextLimitExceeded(SecurityError):
    """More data than the cipher may safely process under one (key, IV)."""


class TagMismatch(SecurityError):
    """The authentication tag does not match: the data was altered, or the key or IV is wrong."""


class StreamEncryptor(Protocol):
    """An incremental encryptor for one (key, IV); used once."""

    def update(self, data: bytes | bytearray | memoryview, /) -> bytes:
        """Encrypt ``data``; returns ciphertext of the same length."""
        ...

    def finalize(self) -> bytes:
        """End the message; returns the authentication tag (``tag_size`` bytes)."""
        ...


class StreamDecryptor(Protocol):
    """An incremental decryptor for one (key, IV); used once.

    The output of :meth:`update` is *unverified* until :meth:`finalize` returned.

    jet-trio's own AES-GCM decryptors also have ``update_into(data, out) -> int``, writing the
    plaintext into the writable buffer ``out`` (at least ``len(data) + 15`` bytes, not
    overlapping ``data``: cryptography 51 and later refuse that) and returning its length; the
    receiver uses it when present, which saves a new buffer per chunk.
    A plugin's cipher is always called through :meth:`update`, which the plugin guard checks.
    """

    def update(self, data: bytes | bytearray | memoryview, /) -> bytes:
        """Decrypt ``data``; returns plaintext of the same length (not yet authenticated)."""
        ...

    def finalize(self, tag: bytes, /) -> None:
        """Check the tag of the whole message; raises :class:`TagMismatch` if it is wrong."""
        ...


class Cipher(ABC):
    """One JET cipher. Subclasses set the class attributes and implement the two factories.

    ``urn`` is the name sent on the wire (without ``:0`` for the XEP-0391 ciphers, as deployed
    clients require); ``aliases`` are other names accepted on receive. ``iv_size`` is the IV length
    generated for new secrets, ``accepted_iv_sizes`` the lengths accepted from peers.
    ``max_plaintext_size`` is the most data one (key, IV) may protect; it is enforced by the objects
    :meth:`encryptor` and :meth:`decryptor` return.
    """

    urn: str
    aliases: tuple[str, ...] = ()
    key_size: int
    """The length of the key in bytes (32 for AES-256-GCM)."""
    iv_size: int
    accepted_iv_sizes: frozenset[int]
    tag_size: int
    """The length of the authentication tag that follows the ciphertext, in bytes."""
    max_plaintext_size: int
    install_hint: str = ""
    """How to get this cipher, e.g. ``pip install jet-trio-chacha20``: shown when a peer lacks
    it. Optional."""

    @abstractmethod
    def new_encryptor(self, key: bytes, iv: bytes) -> StreamEncryptor:
        """Make a raw encryptor (no size limit enforced). Key and IV lengths are already checked."""

    @abstractmethod
    def new_decryptor(self, key: bytes, iv: bytes) -> StreamDecryptor:
        """Make a raw decryptor (no size limit enforced). Key and IV lengths are already checked."""

    @property
    def names(self) -> tuple[str, ...]:
        """The URN and its aliases."""
        return (self.urn, *self.aliases)

    @final
    def check_key_iv(self, key: bytes, iv: bytes) -> None:
        """Raise :class:`CipherError` if ``key`` or ``iv`` has a length this cipher refuses."""
        if len(key) != self.key_size:
            raise CipherError(
                f"{self.urn}: key is {len(key)} bytes, {self.key_size} bytes are required"
            )
        if len(iv) not in self.accepted_iv_sizes:
            sizes = " or ".join(str(n) for n in sorted(self.accepted_iv_sizes))
            raise CipherError(f"{self.urn}: IV is {len(iv)} bytes, {sizes} bytes are required")

    @final
    def encryptor(self, key: bytes, iv: bytes) -> StreamEncryptor:
        """An encryptor that refuses to process more than ``max_plaintext_size`` bytes."""
        self.check_key_iv(key, iv)
        return _LimitedEncryptor(self.new_encryptor(key, iv), self)

    @final
    def decryptor(self, key: bytes, iv: bytes) -> StreamDecryptor:
        """A decryptor that refuses to process more than ``max_plaintext_size`` bytes."""
        self.check_key_iv(key, iv)
        return _LimitedDecryptor(self.new_decryptor(key, iv), self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.urn}>"


def _limit_error(cipher: Cipher) -> PlaintextLimitExceeded:
    return PlaintextLimitExceeded(
        f"{cipher.urn}: more than {cipher.max_plaintext_size} bytes under one key and IV; "
        "a new transport secret (a new session) is required"
    )


class _Limited:
    """Counts plaintext against the cipher's limit per (key, IV); refuses use after finalize."""

    __slots__ = ("_cipher", "_done", "_remaining")
    _what = "cipher context"

    def __init__(self, cipher: Cipher) -> None:
        self._cipher = cipher
        self._remaining = cipher.max_plaintext_size
        self._done = False

    def _count(self, data: bytes | bytearray | memoryview) -> None:
        if self._done:
            raise RuntimeError(f"{self._what} already finalized")
        n = len(data)
        if n > self._remaining:
            raise _limit_error(self._cipher)
        self._remaining -= n

    def _finish(self) -> None:
        if self._done:
            raise RuntimeError(f"{self._what} already finalized")
        self._done = True


class _LimitedEncryptor(_Limited):
    __slots__ = ("_inner",)
    _what = "encryptor"

    def __init__(self, inner: StreamEncryptor, cipher: Cipher) -> None:
        super().__init__(cipher)
        self._inner = inner

    def update(self, data: bytes | bytearray | memoryview, /) -> bytes:
        self._count(data)
        return self._inner.update(data)

    def finalize(self) -> bytes:
        self._finish()
        return self._inner.finalize()


class _LimitedDecryptor(_Limited):
    __slots__ = ("_inner",)
    _what = "decryptor"

    def __init__(self, inner: StreamDecryptor, cipher: Cipher) -> None:
        super().__init__(cipher)
        self._inner = inner

    def update(self, data: bytes | bytearray | memoryview, /) -> bytes:
        self._count(data)
        return self._inner.update(data)

    def update_into(self, data: bytes | bytearray | memoryview, out: memoryview, /) -> int:
        """Decrypt ``data`` into ``out`` (see :class:`StreamDecryptor`); returns the length."""
        self._count(data)
        return decrypt_into(self._inner, data, out)

    def finalize(self, tag: bytes, /) -> None:
        self._finish()
        if len(tag) != self._cipher.tag_size:
            raise TagMismatch(f"{self._cipher.urn}: tag is {len(tag)} bytes")
        self._inner.finalize(tag)


def decrypt_into(
    dec: StreamDecryptor, data: bytes | bytearray | memoryview, out: memoryview
) -> int:
    """Decrypt ``data`` into ``out`` with ``dec``'s ``update_into`` if it has one, else with
    :meth:`~StreamDecryptor.update` and a copy. Returns the plaintext length."""
    into = getattr(dec, "update_into", None)
    if into is not None:
        n: int = into(data, out)
        return n
    plain = dec.update(data)
    out[: len(plain)] = plain
    return len(plain)


@final
class TransportSecret:
    """A JET transport secret: key, IV and the cipher they are for.

    Make a fresh one per session with :meth:`generate`. :meth:`to_bytes` is key ‖ IV (the Smack
    and stub envelope payload); :meth:`from_bytes` reads it back, or takes the key and the IV
    separately (the legacy OMEMO envelope used by Dino and Conversations carries the IV apart).
    """

    __slots__ = ("cipher", "iv", "key")

    def __init__(self, key: bytes, iv: bytes, cipher: Cipher) -> None:
        key, iv = bytes(key), bytes(iv)
        cipher.check_key_iv(key, iv)
        if key[: len(iv)] == iv:
            raise WeakTransportSecret("the IV equals the key: refusing a reused key as IV")
        if not any(key):
            raise WeakTransportSecret("the transport key is all zero bytes")
        if not any(iv):
            raise WeakTransportSecret("the IV is all zero bytes")
        self.key = key
        self.iv = iv
        self.cipher = cipher

    @classmethod
    def generate(cls, cipher: Cipher) -> TransportSecret:
        """A fresh random key and an independent random IV from the OS CSPRNG."""
        while True:
            try:
                return cls(os.urandom(cipher.key_size), os.urandom(cipher.iv_size), cipher)
            except WeakTransportSecret:  # pragma: no cover - probability 2**-96
                continue

    @classmethod
    def from_bytes(cls, data: bytes, cipher: Cipher, iv: bytes | None = None) -> TransportSecret:
        """Read a secret received in an envelope.

        With ``iv`` given, ``data`` is the key alone. Otherwise ``data`` is key ‖ IV, split at the
        cipher's key size; the rest must be an accepted IV length.
        """
        data = bytes(data)
        if iv is not None:
            if len(data) != cipher.key_size:
                raise CipherError(
                    f"{cipher.urn}: the envelope holds a {len(data)}-byte key, "
                    f"{cipher.key_size} bytes are required"
                )
            return cls(data, iv, cipher)
        iv_len = len(data) - cipher.key_size
        if iv_len not in cipher.accepted_iv_sizes:
            wanted = " or ".join(str(cipher.key_size + n) for n in sorted(cipher.accepted_iv_sizes))
            raise CipherError(
                f"{cipher.urn}: the envelope holds {len(data)} bytes of key material, "
                f"{wanted} bytes (key ‖ IV) are required"
            )
        return cls(data[: cipher.key_size], data[cipher.key_size :], cipher)

    def to_bytes(self) -> bytes:
        """Key ‖ IV."""
        return self.key + self.iv

    def encryptor(self) -> StreamEncryptor:
        """A size-limited encryptor for this secret."""
        return self.cipher.encryptor(self.key, self.iv)

    def decryptor(self) -> StreamDecryptor:
        """A size-limited decryptor for this secret."""
        return self.cipher.decryptor(self.key, self.iv)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TransportSecret):
            return NotImplemented
        return (self.key, self.iv, self.cipher.urn) == (other.key, other.iv, other.cipher.urn)

    def __hash__(self) -> int:
        return hash((self.key, self.iv, self.cipher.urn))

    def __repr__(self) -> str:
        # Never print key material.
        return f"<TransportSecret {self.cipher.urn} key={len(self.key)}B iv={len(self.iv)}B>"
