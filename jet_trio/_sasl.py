"""SASL client mechanisms (sans-IO): SCRAM-SHA-256, SCRAM-SHA-1 (via scramp) and PLAIN."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import scramp

from ._errors import JetError, RemoteProtocolError

__all__ = [
    "DEFAULT_MECHANISMS",
    "AuthenticationError",
    "NoCommonMechanism",
    "SaslMechanism",
    "choose_mechanism",
]

# Strongest first. PLAIN is only ever chosen over TLS (enforced by the caller's ``secure`` flag).
DEFAULT_MECHANISMS: Final = ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN")


class AuthenticationError(JetError):
    """Login failed: wrong password, unknown account, or the server's proof did not verify."""

    def __init__(self, message: str, condition: str | None = None) -> None:
        super().__init__(message)
        self.condition = condition


class NoCommonMechanism(AuthenticationError):
    """The server offers no SASL mechanism we are willing to use."""


class SaslMechanism:
    """One SASL exchange: :meth:`initial`, then :meth:`challenge` per server challenge, then
    :meth:`success` with the server's final data (which SCRAM verifies)."""

    def __init__(self, name: str, username: str, password: str) -> None:
        self.name = name
        self._username = username
        self._password = password
        self._scram: scramp.ScramClient | None = None
        self._verified = name == "PLAIN"
        self._first_done = False
        if name.startswith("SCRAM-"):
            self._scram = scramp.ScramClient([name], username, password)

    def initial(self) -> bytes:
        """The initial response sent with ``<auth/>``."""
        if self._scram is None:
            return b"\0" + self._username.encode() + b"\0" + self._password.encode()
        return str(self._scram.get_client_first()).encode()

    def challenge(self, data: bytes) -> bytes:
        """Answer a server challenge."""
        if self._scram is None:
            raise RemoteProtocolError("the server sent a challenge during SASL PLAIN")
        try:
            if not self._first_done:
                self._scram.set_server_first(data.decode())
                self._first_done = True
                return str(self._scram.get_client_final()).encode()
            self._verify(data)
            return b""
        except (scramp.ScramException, UnicodeDecodeError) as exc:
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

    def _verify(self, data: bytes) -> None:
        assert self._scram is not None
        try:
            self._scram.set_server_final(data.decode())
        except (scramp.ScramException, UnicodeDecodeError) as exc:
            raise AuthenticationError(f"the server's SCRAM signature is invalid: {exc}") from None
        self._verified = True


def choose_mechanism(
    offered: Iterable[str], *, allowed: Sequence[str] = DEFAULT_MECHANISMS, secure: bool
) -> str:
    """The strongest mechanism in ``allowed`` that the server offers; PLAIN only if ``secure``."""
    offered_set = {m.upper() for m in offered}
    for name in allowed:
        if name == "PLAIN" and not secure:
            continue
        if name in offered_set:
            return name
    have = ", ".join(sorted(offered_set)) or "none"
    if not secure and "PLAIN" in offered_set:
        raise NoCommonMechanism(
            f"the server offers only PLAIN without TLS ({have}); refusing to send the password"
        )
    raise NoCommonMechanism(f"no common SASL mechanism: the server offers {have}")
