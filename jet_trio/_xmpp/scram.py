"""The client side of SCRAM (RFC 5802, RFC 7677), sans-IO: SCRAM-SHA-1 and SCRAM-SHA-256, with
or without channel binding (``-PLUS``), and SASLprep (RFC 4013) of the user name and password.

:class:`ScramClient` makes the client's two messages and checks the server's two; it keeps no
socket and imports nothing beyond the standard library. Every malformed or unexpected server
message raises :class:`ScramError` (the caller turns it into an authentication error).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from typing import Final

__all__ = ["MAX_ITERATIONS", "ScramClient", "ScramError", "saslprep"]

MAX_ITERATIONS: Final = 1_000_000
"""The highest iteration count a server may ask for: each iteration is an HMAC computed on the
event loop before any answer, so a hostile server must not ask for unbounded work (servers use
4,096 to 10,000; RFC 7677 asks for at least 4,096)."""
_HASHES: Final = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}
_MAX_MESSAGE: Final = 16_384


class ScramError(Exception):
    """A SCRAM exchange cannot go on: a malformed or unexpected server message, a server error
    (``e=``), a proof that does not verify, or a name or password SASLprep refuses."""


def saslprep(text: str, what: str = "string") -> str:
    """SASLprep (RFC 4013): the stringprep profile for user names and passwords, as a stored
    string (unassigned code points refused). Raises :class:`ScramError`."""
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c)
    )
    out = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_a1,
        stringprep.in_table_c12,
        stringprep.in_table_c21_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
    )
    for c in out:
        if any(table(c) for table in prohibited):
            raise ScramError(f"the {what} contains a character SASLprep prohibits: {c!r}")
    # RFC 3454 section 6: right-to-left text is all RandALCat-or-neutral, and starts and ends
    # with a RandALCat character.
    if any(stringprep.in_table_d1(c) for c in out):
        if any(stringprep.in_table_d2(c) for c in out):
            raise ScramError(f"the {what} mixes left-to-right and right-to-left text")
        if not (stringprep.in_table_d1(out[0]) and stringprep.in_table_d1(out[-1])):
            raise ScramError(f"the {what} is right-to-left text with a neutral end")
    return out


def _attributes(message: str, what: str) -> list[tuple[str, str]]:
    if len(message) > _MAX_MESSAGE:
        raise ScramError(f"the server's {what} is too long")
    pairs = []
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=" or not part[0].isascii() or not part[0].isalpha():
            raise ScramError(f"malformed SCRAM {what}: {message[:100]!r}")
        pairs.append((part[0], part[2:]))
    return pairs


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ScramError(f"the server's {what} is not valid base64") from None


class ScramClient:
    """One SCRAM exchange, client side: :meth:`client_first`, :meth:`server_first` (returns the
    client's final message), :meth:`server_final` (verifies the server).

    ``mechanism`` is ``SCRAM-SHA-1`` or ``SCRAM-SHA-256``, with ``-PLUS`` for channel binding.
    ``channel_binding`` is ``(type, data)`` when the TLS layer gives one: a ``-PLUS`` mechanism
    binds to it; a plain mechanism then sends the GS2 flag ``y`` ("I could bind, you did not
    offer it"), which a server that supports binding refuses (a stripped offer is detected).
    ``nonce`` is for tests only.
    """

    def __init__(
        self,
        mechanism: str,
        username: str,
        password: str,
        *,
        channel_binding: tuple[str, bytes] | None = None,
        nonce: str | None = None,
    ) -> None:
        plus = mechanism.endswith("-PLUS")
        algo = _HASHES.get(mechanism.removesuffix("-PLUS"))
        if algo is None:
            raise ScramError(f"unknown SCRAM mechanism {mechanism!r}")
        if plus and channel_binding is None:
            raise ScramError(f"{mechanism} needs channel binding data")
        self.mechanism = mechanism
        self._algo = algo
        user = saslprep(username, "user name").replace("=", "=3D").replace(",", "=2C")
        if not user:
            raise ScramError("the user name is empty")
        self._password = saslprep(password, "password").encode()
        self._nonce = nonce if nonce is not None else secrets.token_urlsafe(24)
        if plus:
            assert channel_binding is not None
            cb_type, cb_data = channel_binding
            self._gs2 = f"p={cb_type},,"
            self._cbind = self._gs2.encode() + cb_data
        else:
            self._gs2 = "y,," if channel_binding is not None else "n,,"
            self._cbind = self._gs2.encode()
        self._first_bare = f"n={user},r={self._nonce}"
        self._server_signature: bytes | None = None
        self._stage = 0

    def _hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, self._algo).digest()

    def client_first(self) -> str:
        """The client's first message (GS2 header and bare message)."""
        if self._stage != 0:
            raise ScramError("client_first() was called twice")
        self._stage = 1
        return self._gs2 + self._first_bare

    def server_first(self, message: str) -> str:
        """Check the server's first message; returns the client's final message (with the
        proof)."""
        if self._stage != 1:
            raise ScramError("unexpected server-first message")
        self._stage = 2
        attrs = _attributes(message, "first message")
        keys = [k for k, _ in attrs]
        if keys and keys[0] == "e":
            raise ScramError(f"the server refused: {attrs[0][1]}")
        if keys[:3] != ["r", "s", "i"]:
            if keys and keys[0] == "m":
                raise ScramError("the server requires a SCRAM extension we do not know")
            raise ScramError(f"malformed SCRAM first message: {message[:100]!r}")
        nonce, salt_text, count = (v for _, v in attrs[:3])
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise ScramError("the server's nonce does not extend ours")
        if not nonce.isprintable() or not nonce.isascii():
            raise ScramError("the server's nonce is not printable ASCII")
        salt = _b64(salt_text, "salt")
        if not salt:
            raise ScramError("the server sent an empty salt")
        if not count.isascii() or not count.isdigit() or len(count) > 9:
            raise ScramError(f"the server's iteration count is not a number: {count[:20]!r}")
        iterations = int(count)
        if not 1 <= iterations <= MAX_ITERATIONS:
            raise ScramError(
                f"the server asks for {iterations} iterations (at most {MAX_ITERATIONS})"
            )
        salted = hashlib.pbkdf2_hmac(self._algo, self._password, salt, iterations)
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self._algo, client_key).digest()
        without_proof = f"c={base64.b64encode(self._cbind).decode()},r={nonce}"
        auth = f"{self._first_bare},{message},{without_proof}".encode()
        signature = self._hmac(stored_key, auth)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = self._hmac(self._hmac(salted, b"Server Key"), auth)
        return f"{without_proof},p={base64.b64encode(proof).decode()}"

    def server_final(self, message: str) -> None:
        """Verify the server's final message (its signature proves it knows the password)."""
        if self._stage != 2 or self._server_signature is None:
            raise ScramError("unexpected server-final message")
        self._stage = 3
        attrs = _attributes(message, "final message")
        key, value = attrs[0]
        if key == "e":
            raise ScramError(f"the server refused: {value}")
        if key != "v":
            raise ScramError(f"malformed SCRAM final message: {message[:100]!r}")
        if not hmac.compare_digest(_b64(value, "signature"), self._server_signature):
            raise ScramError("the server's signature does not match")
