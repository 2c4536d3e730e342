"""The exception hierarchy. Every error jet-trio raises on purpose derives from :class:`JetError`.

Each area of the library defines its specific exceptions next to its code, deriving from the
classes here; the public ones are re-exported from :mod:`jet_trio`.
"""

from __future__ import annotations


class JetError(Exception):
    """Base class of every error raised by jet-trio."""


class ProtocolError(JetError):
    """The peer or server broke the protocol (XMPP, Jingle, SOCKS5...)."""


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol does not allow in the current state."""


class RemoteProtocolError(ProtocolError):
    """The remote side sent something the protocol does not allow."""


class XMLError(RemoteProtocolError):
    """Malformed or forbidden XML received.

    ``condition`` is the RFC 6120 stream error condition to send back (``not-well-formed``,
    ``restricted-xml``, ``policy-violation``...).
    """

    def __init__(self, message: str, condition: str = "not-well-formed") -> None:
        super().__init__(message)
        self.condition = condition


class SecurityError(JetError):
    """A security check failed (bad tag, unauthenticated envelope, wrong sender...).

    Never followed by an unencrypted fallback.
    """
