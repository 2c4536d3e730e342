"""The envelope method interface: how the transport secret travels to the peer.

An envelope method (stub, OMEMO, OpenPGP...) wraps a :class:`~jet_trio._jet.cipher.TransportSecret`
into an XML element for the peer and unwraps it again, *authenticating the sender*. The JET layer
then checks with :func:`check_envelope_sender` that the authenticated sender is the session's
initiator (XEP-0391 section 7).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass

from lxml import etree

from .._errors import SecurityError
from .._xmpp.jid import JID
from .cipher import Cipher, TransportSecret

__all__ = [
    "DecryptedEnvelope",
    "EnvelopeError",
    "EnvelopeMethod",
    "EnvelopeSenderMismatch",
    "Trust",
    "UntrustedEnvelope",
    "check_envelope_sender",
]


class EnvelopeError(SecurityError):
    """An envelope could not be made or opened (no session with the device, bad payload...)."""


class EnvelopeSenderMismatch(SecurityError):
    """The envelope was made by someone other than the session's initiator."""


class UntrustedEnvelope(SecurityError):
    """The envelope's sender key is explicitly distrusted."""


class Trust(enum.Enum):
    """How far the envelope method vouches for the sender's key."""

    VERIFIED = "verified"
    """The key was verified by the user (fingerprint comparison, QR code)."""
    UNDECIDED = "undecided"
    """Authenticated by a key the user has not decided on (blind trust, TOFU)."""
    UNTRUSTED = "untrusted"
    """Authenticated by a key the user distrusts: the transfer is refused."""
    NONE = "none"
    """Not authenticated cryptographically at all (the stub envelope: testing only)."""


@dataclass(frozen=True, slots=True)
class DecryptedEnvelope:
    """What an envelope method found in an envelope.

    ``sender_identity`` is the bare JID the envelope method authenticated (for OMEMO: the owner of
    the device key that made the envelope), not a copy of the stanza's ``from``.
    """

    secret: TransportSecret
    sender_identity: JID
    trust: Trust
    detail: str = ""
    """Free text for the user, e.g. the device id and fingerprint."""


class EnvelopeMethod(ABC):
    """One way of carrying a transport secret. Registered by ``jet_register_envelopes``.

    ``namespace`` is the envelope element's namespace and the ``type`` of ``<security>``;
    ``features`` are the disco#info features advertised when the method is loaded.
    """

    namespace: str
    features: tuple[str, ...]

    @abstractmethod
    async def encrypt(self, secret: TransportSecret, peer: JID) -> etree._Element:
        """Make the envelope element carrying ``secret`` for ``peer``.

        Raises :class:`EnvelopeError` if it cannot (e.g. no session with any of the peer's devices).
        """

    @abstractmethod
    async def decrypt(
        self, element: etree._Element, sender: JID, cipher: Cipher
    ) -> DecryptedEnvelope:
        """Open the envelope ``element`` received from ``sender`` (the iq's ``from``).

        ``cipher`` is the one named in ``<security>``; build the secret with
        ``TransportSecret.from_bytes(..., cipher)``. Must authenticate the sender and report the
        authenticated identity; raises :class:`EnvelopeError` (or another
        :class:`~jet_trio.SecurityError`) when the envelope cannot be opened.
        """

    async def start(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Called once by :func:`~jet_trio.open_file_transfer` before support is advertised
        (e.g. to publish keys). The default does nothing."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.namespace}>"


def check_envelope_sender(decrypted: DecryptedEnvelope, initiator: JID) -> None:
    """Refuse an envelope not authenticated as coming from the session's ``initiator``.

    Compares bare JIDs. Raises :class:`EnvelopeSenderMismatch` or :class:`UntrustedEnvelope`.
    """
    if decrypted.trust is Trust.UNTRUSTED:
        raise UntrustedEnvelope(
            f"the transfer from {initiator.bare} is encrypted with a key you marked as "
            "untrusted; the transfer was refused"
        )
    if decrypted.sender_identity.bare != initiator.bare:
        raise EnvelopeSenderMismatch(
            f"the encryption key of this transfer was sent by {decrypted.sender_identity.bare}, "
            f"but the transfer comes from {initiator.bare}: possible man-in-the-middle, "
            "the transfer was refused"
        )
