"""The typed errors of the OpenPGP envelope method.

Every error is an :class:`OpenPGPError` (itself a :class:`~jet_trio.plugin.EnvelopeError`, so a
:class:`~jet_trio.SecurityError`); the two that are about *who* made the envelope also derive from
the JET layer's :class:`~jet_trio.plugin.EnvelopeSenderMismatch` and
:class:`~jet_trio.plugin.UntrustedEnvelope`.
"""

from __future__ import annotations

from collections.abc import Sequence

from jet_trio.plugin import EnvelopeError, EnvelopeSenderMismatch, KeyRecord, TrustDecisionNeeded

__all__ = [
    "KeyStoreError",
    "MalformedEnvelope",
    "NoPublicKey",
    "OpenPGPError",
    "PeerNotSupported",
    "ReplayedEnvelope",
    "StaleEnvelope",
    "UndecryptableEnvelope",
    "UntrustedKey",
    "WrongRecipient",
    "WrongSigner",
]


class OpenPGPError(EnvelopeError):
    """Base class: an OpenPGP envelope could not be made or was refused."""


class MalformedEnvelope(OpenPGPError):
    """The ``<openpgp>`` element or the ``<signcrypt>`` inside it is not what the protocol says."""


class UndecryptableEnvelope(OpenPGPError):
    """The OpenPGP message could not be decrypted: not encrypted to our key, or altered."""


class PeerNotSupported(OpenPGPError):
    """The peer does not advertise JET with OpenPGP (``urn:jet-trio:jingle:jet-openpgp:0``)."""


class NoPublicKey(OpenPGPError):
    """The peer has published no usable OpenPGP key (PEP node missing, empty or invalid)."""


class WrongRecipient(OpenPGPError):
    """The ``<signcrypt>`` is addressed (``<to>``) to someone else: a forwarded envelope."""


class StaleEnvelope(OpenPGPError):
    """The ``<time>`` of the ``<signcrypt>`` is outside the accepted window (replay or clock)."""


class ReplayedEnvelope(OpenPGPError):
    """This very ``<signcrypt>`` was already accepted once (within the time window)."""


class WrongSigner(OpenPGPError, EnvelopeSenderMismatch):
    """The envelope is not signed by any key the stanza's sender (the iq ``from``) published."""


class UntrustedKey(OpenPGPError, TrustDecisionNeeded):
    """The key is distrusted, or not trusted under the policy in force (unverified new key):
    a :class:`~jet_trio.plugin.TrustDecisionNeeded` whose ``keys`` name it."""

    def __init__(
        self, message: str, jid: str = "", fingerprint: str = "", keys: Sequence[KeyRecord] = ()
    ) -> None:
        super().__init__(message)
        self.jid = jid
        self.fingerprint = fingerprint
        self.method = "openpgp"
        self.keys = tuple(keys)


class KeyStoreError(OpenPGPError):
    """Our own key could not be loaded or stored (wrong passphrase, another account's key...)."""
