"""The envelope method interface: how the transport secret travels to the peer.

An envelope method (stub, OMEMO, OpenPGP...) wraps a :class:`~jet_trio._jet.cipher.TransportSecret`
into an XML element for the peer and unwraps it again, *authenticating the sender*. The JET layer
then checks with :func:`check_envelope_sender` that the authenticated sender is the session's
initiator (XEP-0391 section 7).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from lxml import etree

from .._errors import SecurityError
from .._xmpp import ns as _ns
from .._xmpp.jid import JID
from .cipher import Cipher, TransportSecret

__all__ = [
    "DecryptedEnvelope",
    "EnvelopeError",
    "EnvelopeInfo",
    "EnvelopeMethod",
    "EnvelopeSenderMismatch",
    "EnvelopeSession",
    "KeyEvent",
    "KeyNotice",
    "KeyRecord",
    "KeyStore",
    "KeyTrust",
    "Trust",
    "TrustDecisionNeeded",
    "UntrustedEnvelope",
    "check_envelope_sender",
]


class EnvelopeError(SecurityError):
    """An envelope could not be made or opened (no session with the device, bad payload...)."""


class EnvelopeSenderMismatch(SecurityError):
    """The envelope was made by someone other than the session's initiator."""


class UntrustedEnvelope(SecurityError):
    """The envelope's sender key is explicitly distrusted."""


class KeyTrust(enum.Enum):
    """The user's decision about one key (or device) of an account, as a key store lists it."""

    OWN = "own"
    """Our own key or this device."""
    VERIFIED = "verified"
    """Verified by the user (``jet-trio trust``)."""
    TOFU = "tofu"
    """Accepted on first use, without a decision (OpenPGP TOFU, OMEMO blind trust)."""
    UNDECIDED = "undecided"
    """No decision yet: used or not according to the method's policy."""
    DISTRUSTED = "distrusted"
    """Refused by the user (``jet-trio trust --distrust``)."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One key (OpenPGP) or device (OMEMO) of an account, as a :class:`KeyStore` lists it."""

    jid: JID
    """The bare JID owning the key."""
    fingerprint: str
    """As the user compares it (e.g. groups of hex digits)."""
    trust: KeyTrust
    """The user's decision about the key (or that it is one of our own)."""
    device_id: int | None = None
    """The device id, for methods with devices (OMEMO); ``None`` otherwise."""
    active: bool = True
    """Published now (in the account's device or key list)."""

    @property
    def own(self) -> bool:
        """One of our own keys or devices."""
        return self.trust is KeyTrust.OWN

    @property
    def compact(self) -> str:
        """The fingerprint without spaces or colons, lower case (what :meth:`KeyStore.find`
        compares)."""
        return "".join(self.fingerprint.replace(":", " ").split()).lower()


class KeyStore(ABC):
    """The keys and trust decisions of an envelope method: what ``jet-trio fingerprints`` lists
    and ``jet-trio trust`` changes. Set as :attr:`EnvelopeMethod.key_store`; several methods of one
    plugin may share one store (OMEMO's two namespaces share the devices).
    """

    name: str
    """The short name the command line shows and accepts (``--envelope NAME``), e.g. ``omemo``."""
    title: str
    """A heading for the listing, e.g. ``OMEMO devices``."""

    @abstractmethod
    async def list_keys(self, jid: JID) -> list[KeyRecord]:
        """The keys of ``jid`` (a bare JID; our own ones for our own JID), freshly read where the
        method can (e.g. the published device list). Raises on failure."""

    @abstractmethod
    async def set_trust(self, key: KeyRecord, trusted: bool) -> KeyRecord:
        """Mark ``key`` (one :meth:`list_keys` returned) verified (``trusted``) or distrusted;
        returns the key as listed after the decision. The decision must apply to transfers."""

    def find(self, keys: Sequence[KeyRecord], wanted: str) -> list[KeyRecord]:
        """The keys ``wanted`` names: a fingerprint (spaces, colons and case ignored) or a
        device id. Override for other ways of naming a key."""
        text = "".join(wanted.replace(":", " ").split()).lower()
        return [
            k
            for k in keys
            if k.compact == text
            or (k.device_id is not None and text.isdigit() and int(text) == k.device_id)
        ]


class KeyEvent(enum.Enum):
    """What a :class:`KeyNotice` tells the user."""

    FIRST_USE = "first-use"
    """A new key or device of a peer is used without a decision (trusted on first use)."""
    LEFT_OUT = "left-out"
    """A key or device without a decision was left out of a transfer (the transfer went on with
    the trusted ones)."""
    REFUSED = "refused"
    """A transfer from a key or device that is distrusted or undecided was refused."""


@dataclass(frozen=True, slots=True)
class KeyNotice:
    """Something about a key the user should know and may act on (through
    :attr:`PluginConfig.notify <jet_trio.plugin.PluginConfig.notify>`). The host says what to do
    (e.g. the ``jet-trio trust`` command line)."""

    event: KeyEvent
    """What happened to the key."""
    method: str
    """The short name of the envelope method (the :attr:`KeyStore.name`)."""
    key: KeyRecord
    """The key or device concerned."""


class TrustDecisionNeeded(UntrustedEnvelope):
    """A transfer needs a trust decision about ``keys`` first (e.g. no trusted device of the
    peer is left, or the sender's key is new and the policy asks for a decision). The host
    tells the user how to decide (``jet-trio trust JID FINGERPRINT`` or ``--distrust``)."""

    def __init__(self, message: str, method: str = "", keys: Sequence[KeyRecord] = ()) -> None:
        super().__init__(message)
        self.method = method
        self.keys = tuple(keys)


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
    """The transport secret (key and IV) the envelope carried."""
    sender_identity: JID
    """The bare JID the method authenticated as the envelope's maker."""
    trust: Trust
    """How far the method vouches for that sender's key."""
    detail: str = ""
    """Free text for the user, e.g. the device id and fingerprint."""


class EnvelopeMethod(ABC):
    """One way of carrying a transport secret. Registered by ``jet_register_envelopes``.

    ``namespace`` is the envelope element's namespace and the ``type`` of ``<security>``;
    ``features`` are the disco#info features advertised when the method is loaded. The other
    attributes are optional, with defaults that suit a method that does not set them.
    """

    namespace: str
    features: tuple[str, ...]
    short_name: str | None = None
    """A short name for ``--envelope`` (``omemo``); methods may share one (the first loaded is
    used). ``None``: only the namespace names the method."""
    preferred_cipher: str = _ns.CIPHER_AES256_GCM
    """The cipher URN used when neither the caller nor the cipher preference chose one and the
    peer does not advertise AES-256-GCM (legacy OMEMO: AES-128-GCM, all Dino accepts)."""
    strength: int | None = None
    """How ``encrypt="auto"`` ranks the method (higher wins, see
    :func:`jet_trio.envelope_strength`); ``None``: the rank jet-trio knows for its namespace
    (OMEMO 2 30, legacy OMEMO 20, OpenPGP 15, the stub 0), else 10."""
    testing_only: bool = False
    """An insecure method for tests and demos (the stub): flagged wherever it is listed and
    never chosen by default."""
    install_hint: str = ""
    """How to get this method, e.g. ``pip install jet-trio-omemo``: shown when a peer lacks it."""
    key_store: KeyStore | None = None
    """The keys and trust decisions of the method, if it has keys the user decides on."""

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


class EnvelopeSession(ABC):
    """State an envelope plugin keeps for the whole connection, opened before its methods are
    offered (e.g. the OMEMO session: its store, and background tasks in the client's nursery).

    Returned by the ``jet_envelope_sessions`` hook; the host enters :meth:`open` (or
    :meth:`prepare`, when it may never use the methods) after login and
    before it makes the :class:`~jet_trio.plugin.PluginManager`, whose
    ``jet_register_envelopes`` call then offers the methods of the running session, and leaves
    it when the connection ends. A session that fails to open is reported, and the methods it
    would offer (:attr:`methods`) are then not used in place of another one quietly.
    """

    label: str = ""
    """For messages, e.g. ``OMEMO``."""
    methods: frozenset[str] = frozenset()
    """Short names and namespaces of the envelope methods it offers once open."""

    @abstractmethod
    def open(self) -> AbstractAsyncContextManager[object]:
        """An async context manager that runs the session while its block runs."""

    def prepare(self) -> AbstractAsyncContextManager[object]:
        """Like :meth:`open`, for a host that may never use the methods (a receiver waiting for
        offers that may all use another method): do only the cheap part now (keep what peers
        rely on published and advertised) and leave the costly part (libraries, stores) to the
        first use of the methods, which must then start it themselves.

        Entered in place of :meth:`open`, never both. The default enters :meth:`open`: a
        session without a cheap form starts in full.
        """
        return self.open()


@dataclass(frozen=True, slots=True)
class EnvelopeInfo:
    """An envelope method a plugin can offer, declared without making it (the
    ``jet_describe_envelopes`` hook): read by ``jet-trio plugins`` and by the command line to
    name, explain and resolve methods that are not loaded in this run."""

    namespace: str
    """The envelope element's namespace (the method's full name)."""
    short_name: str | None = None
    """As :attr:`EnvelopeMethod.short_name`."""
    install_hint: str = ""
    """As :attr:`EnvelopeMethod.install_hint`."""
    requires: str = ""
    """What the method needs to be offered, said when it is not loaded (e.g. ``a login
    (--account)``)."""
    options: Mapping[str, str] = field(default_factory=dict)
    """The plugin options it reads (:attr:`PluginConfig.options`): key -> what it does."""
    testing_only: bool = False
    """As :attr:`EnvelopeMethod.testing_only`."""


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
