"""SASL client mechanisms (sans-IO): SCRAM-SHA-256(-PLUS), SCRAM-SHA-1(-PLUS), PLAIN.

SCRAM itself is :mod:`.scram`.

Channel binding (RFC 5802, RFC 5929, RFC 9266) ties the SCRAM proof to the TLS connection: a
relaying TLS proxy, even one holding a certificate the client trusts, then fails the login.
XEP-0474 downgrade protection checks the server's ``h`` attribute (a hash of the mechanisms and
channel-binding types the server advertised) against what we saw.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Final

from .._errors import JetError, RemoteProtocolError
from .scram import ScramClient, ScramError

__all__ = [
    "DEFAULT_MECHANISMS",
    "AuthenticationError",
    "DowngradeDetected",
    "NoCommonMechanism",
    "SaslMechanism",
    "choose_mechanism",
]

# Strongest first. PLAIN is only ever chosen over TLS (enforced by the caller's ``secure`` flag);
# a ``-PLUS`` mechanism only when a channel binding both sides support is available.
DEFAULT_MECHANISMS: Final = (
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1",
    "PLAIN",
)


class AuthenticationError(JetError):
    """Login failed: wrong password, unknown account, or the server's proof did not verify."""

    def __init__(self, message: str, condition: str | None = None) -> None:
        super().__init__(message)
        self.condition = condition


class NoCommonMechanism(AuthenticationError):
    """The server offers no SASL mechanism we are willing to use."""


class DowngradeDetected(AuthenticationError):
    """XEP-0474: the mechanisms or channel-binding types we saw are not what the server sent."""


class SaslMechanism:
    """One SASL exchange: :meth:`initial`, then :meth:`challenge` per server challenge, then
    :meth:`success` with the server's final data (which SCRAM verifies).

    ``channel_binding`` is ``(type, data)`` when the TLS layer gives one: a ``-PLUS`` mechanism
    uses it, a plain SCRAM mechanism then tells the server "I could bind, you did not offer it"
    (the GS2 ``y`` flag, which a server that does support binding rejects). ``advertised`` is
    what the server offered (mechanisms, XEP-0440 binding types or ``None``), for XEP-0474.
    """

    def __init__(
        self,
        name: str,
        username: str,
        password: str,
        *,
        channel_binding: tuple[str, bytes] | None = None,
        advertised: tuple[Sequence[str], Sequence[str] | None] | None = None,
    ) -> None:
        self.name = name
        self._username = username
        self._password = password
        self._scram: ScramClient | None = None
        self._verified = name == "PLAIN"
        self._first_done = False
        self._advertised = advertised
        self.channel_binding = (
            channel_binding[0] if name.endswith("-PLUS") and channel_binding else None
        )
        if name.endswith("-PLUS") and channel_binding is None:
            raise ValueError(f"{name} needs channel binding data")
        if name.startswith("SCRAM-"):
            try:
                self._scram = ScramClient(name, username, password, channel_binding=channel_binding)
            except ScramError as exc:
                raise AuthenticationError(f"cannot start {name}: {exc}") from None

    def initial(self) -> bytes:
        """The initial response sent with ``<auth/>``."""
        if self._scram is None:
            return b"\0" + self._username.encode() + b"\0" + self._password.encode()
        return self._scram.client_first().encode()

    def challenge(self, data: bytes) -> bytes:
        """Answer a server challenge."""
        if self._scram is None:
            raise RemoteProtocolError("the server sent a challenge during SASL PLAIN")
        try:
            if not self._first_done:
                text = data.decode()
                final = self._scram.server_first(text)
                self._check_downgrade(text)
                self._first_done = True
                return final.encode()
            self._verify(data)
            return b""
        except (ScramError, UnicodeDecodeError) as exc:
            raise AuthenticationError(f"SCRAM exchange failed: {exc}") from None

    def success(self, data: bytes) -> None:
        """Check the data carried by ``<success/>``; raises if the server was not verified."""
        if self._scram is None:
            return
        if data:
            self._verify(data)
        if not self._verified:
            raise AuthenticationError(
                "the server reported success without proving it knows the password"
            )

    def _check_downgrade(self, server_first: str) -> None:
        """XEP-0474: compare the server's ``h`` attribute with a hash of what we were offered."""
        attrs = dict(p.split("=", 1) for p in server_first.split(",") if len(p) > 2 and p[1] == "=")
        given = attrs.get("h")
        if given is None or self._advertised is None:
            return
        mechanisms, bindings = self._advertised
        text = "\x1e".join(sorted(mechanisms))
        if bindings is not None:
            text += "\x1f" + "\x1e".join(sorted(bindings))
        algo = "sha256" if self.name.startswith("SCRAM-SHA-256") else "sha1"
        expected = base64.b64encode(hashlib.new(algo, text.encode()).digest()).decode()
        if not hmac.compare_digest(expected.encode(), given.encode()):
            raise DowngradeDetected(
                "the server's list of login methods differs from the one we received "
                "(XEP-0474): someone between us and the server changed it; login aborted"
            )

    def _verify(self, data: bytes) -> None:
        assert self._scram is not None
        try:
            self._scram.server_final(data.decode())
        except (ScramError, UnicodeDecodeError) as exc:
            raise AuthenticationError(f"the server's SCRAM signature is invalid: {exc}") from None
        self._verified = True


def choose_mechanism(
    offered: Iterable[str],
    *,
    allowed: Sequence[str] = DEFAULT_MECHANISMS,
    secure: bool,
    binding: bool = False,
) -> str:
    """The strongest mechanism in ``allowed`` that the server offers; PLAIN only if ``secure``,
    a ``-PLUS`` mechanism only with a usable channel ``binding``."""
    offered_set = {m.upper() for m in offered}
    for name in allowed:
        if name == "PLAIN" and not secure:
            continue
        if name.endswith("-PLUS") and not binding:
            continue
        if name in offered_set:
            return name
    have = ", ".join(sorted(offered_set)) or "none"
    if not secure and "PLAIN" in offered_set:
        raise NoCommonMechanism(
            f"the server offers only PLAIN without TLS ({have}); refusing to send the password"
        )
    raise NoCommonMechanism(f"no common SASL mechanism: the server offers {have}")
