"""Choosing the peer's resource, the JET envelope method and the cipher of a transfer.

The decisions are pure functions of what the peer advertises (a :class:`DiscoInfo`) and what is
loaded (:func:`choose_envelope`, :func:`choose_cipher`, :func:`envelope_strength`); the
:class:`Chooser` around them does the little I/O they need: asking the peer what it supports,
and the envelope method's own ``encrypt``/``decrypt``, each bounded by the negotiation timeout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Final

from lxml import etree

from .._errors import JetError, SecurityError
from .._jet.cipher import Cipher, TransportSecret
from .._jet.element import build_security, parse_security
from .._jet.envelope import EnvelopeMethod, check_envelope_sender
from .._plugins.manager import PluginManager
from .._xmpp import ns as _ns
from .._xmpp.client import Client
from .._xmpp.disco import DiscoInfo
from .._xmpp.jid import JID
from .._xmpp.stanza import StanzaError
from .driver import _within
from .types import EncryptionFailed, TransferError

__all__ = [
    "DEFAULT_CIPHER",
    "Chooser",
    "choose_cipher",
    "choose_envelope",
    "describe_choice",
    "envelope_strength",
]

DEFAULT_CIPHER: Final = _ns.CIPHER_AES256_GCM
_STANDARD_CIPHERS: Final = frozenset({_ns.CIPHER_AES128_GCM, _ns.CIPHER_AES256_GCM})

_ENVELOPE_STRENGTH: Final = {
    "urn:xmpp:omemo:2": 30,
    "eu.siacs.conversations.axolotl": 20,
    "urn:xmpp:openpgp:0": 15,  # no forward secrecy, and no deployed client speaks it
    _ns.JET_STUB: 0,
}


def envelope_strength(method: EnvelopeMethod) -> int:
    """How ``encrypt="auto"`` ranks an envelope method: its
    :attr:`~jet_trio.plugin.EnvelopeMethod.strength` if it sets one, else OMEMO 2 30, legacy
    OMEMO 20, OpenPGP 15 (no forward secrecy, and only jet-trio speaks it), other methods 10,
    the stub 0."""
    if method.strength is not None:
        return method.strength
    return _ENVELOPE_STRENGTH.get(method.namespace, 10)


def choose_envelope(
    envelopes: Sequence[EnvelopeMethod], info: DiscoInfo, peer: JID
) -> tuple[EnvelopeMethod, str]:
    """For ``encrypt="auto"``: the strongest of ``envelopes`` (:func:`envelope_strength`) whose
    features ``info`` (the peer's) has, the earliest on a tie, and why. Raises
    :class:`EncryptionFailed` (``unsupported-applications``) when there is none."""
    common = [m for m in envelopes if info.has(*m.features)]
    if not common:
        raise EncryptionFailed(
            f"{peer} supports none of our JET envelope methods "
            f"({', '.join(m.namespace for m in envelopes) or 'none loaded'}); "
            "pass encrypt=None to send unencrypted",
            "unsupported-applications",
        )
    best = max(common, key=envelope_strength)  # max keeps the first of equals
    others = [m.namespace for m in common if m is not best]
    why = f"the strongest envelope {peer} advertises"
    if others:
        why += f" (also common: {', '.join(others)})"
    return best, why


def choose_cipher(
    plugins: PluginManager,
    method: EnvelopeMethod,
    wanted: str | None,
    info: DiscoInfo,
    peer: JID,
    preference: Sequence[str] = (),
) -> tuple[Cipher, str]:
    """``wanted``, else the first of ``preference`` the peer supports, else AES-256-GCM unless
    the envelope method prefers another cipher (legacy OMEMO: AES-128-GCM, the only one Dino
    and Conversations accept) and the peer does not advertise AES-256-GCM. The XEP-0391
    ciphers are assumed with JET; any other cipher is used only if ``info`` (the peer's)
    advertises its URN. Returns the cipher and why it was chosen."""

    def usable(urn: str) -> Cipher | None:
        try:
            c = plugins.cipher(urn)
        except SecurityError:
            return None
        return c if c.urn in _STANDARD_CIPHERS or info.has(c.urn) else None

    if wanted is not None:
        chosen = usable(wanted)
        if chosen is None:
            plugins.cipher(wanted)  # raises UnknownCipher if we lack it ourselves
            raise EncryptionFailed(
                f"{peer} does not support the cipher {wanted}", "unsupported-applications"
            )
        return chosen, "cipher asked for"
    for urn in preference:
        if (chosen := usable(urn)) is not None:
            return chosen, "first of cipher_preference the peer supports"
    preferred = method.preferred_cipher
    if plugins.cipher(preferred).urn == DEFAULT_CIPHER:
        return plugins.cipher(DEFAULT_CIPHER), "the strongest standard cipher"
    if info.has(DEFAULT_CIPHER):
        return (
            plugins.cipher(DEFAULT_CIPHER),
            f"the strongest standard cipher, advertised by {peer}",
        )
    return (
        plugins.cipher(preferred),
        f"the cipher {method.namespace} prefers; {peer} does not advertise AES-256-GCM "
        "(Dino and Conversations accept only AES-128-GCM)",
    )


def describe_choice(
    method: EnvelopeMethod | None, secret: TransportSecret | None, why: str, why_cipher: str
) -> str:
    """:attr:`~jet_trio.TransferResult.choice`: which envelope and cipher, and why."""
    if method is None or secret is None:
        return why
    return f"{method.namespace}: {why}; {secret.cipher.urn}: {why_cipher}"


class Chooser:
    """The I/O around the choices: the peer's features (caps or a bounded disco#info query),
    and the envelope method's ``encrypt``/``decrypt`` (bounded by ``timeout``)."""

    def __init__(
        self,
        client: Client,
        plugins: PluginManager,
        timeout: float,
        cipher_preference: Sequence[str] = (),
    ) -> None:
        self.client = client
        self.plugins = plugins
        self.timeout = timeout
        self.cipher_preference = tuple(cipher_preference)

    async def resolve_peer(self, to: JID | str) -> JID:
        """``to`` if it is a full JID, else the available resource of it that supports file
        transfer (most recently seen first)."""
        jid = JID(to)
        if not jid.is_bare:
            return jid
        for full in reversed(self.client.resources(jid)):
            with contextlib.suppress(JetError):
                if (await self.features_of(full)).has(_ns.JINGLE_FT):
                    return full
                # The caps we saw may predate the peer enabling file transfer: ask afresh.
                with _within(self.timeout, f"{full} did not answer our disco#info"):
                    fresh = await self.client.disco(full)
                if fresh.has(_ns.JINGLE_FT):
                    return full
        raise TransferError(
            f"{jid} has no available resource that supports Jingle file transfer", "gone"
        )

    async def features_of(self, peer: JID) -> DiscoInfo:
        """What ``peer`` supports (its caps, or a disco#info query bounded by the timeout)."""
        with _within(self.timeout, f"{peer} did not say what it supports"):
            return await self.client.features_of(peer)

    async def _advertised(self, peer: JID) -> DiscoInfo:
        try:
            return await self.features_of(peer)
        except StanzaError as exc:
            raise TransferError(f"cannot ask {peer} what it supports: {exc}", "gone") from None

    async def envelope(self, peer: JID, encrypt: str | None) -> tuple[EnvelopeMethod | None, str]:
        """The envelope method to use and why: none for ``encrypt=None``, ``encrypt`` itself,
        or for ``"auto"`` :func:`choose_envelope` over what ``peer`` advertises."""
        if encrypt is None:
            return None, "not encrypted: encrypt=None"
        if encrypt != "auto":
            return self.plugins.envelope(encrypt), "envelope asked for"
        return choose_envelope(self.plugins.envelopes, await self._advertised(peer), peer)

    async def make_security(
        self, method: EnvelopeMethod | None, cipher: str | None, peer: JID, content_name: str
    ) -> tuple[TransportSecret | None, etree._Element | None, str]:
        """A fresh transport secret and its ``<security>`` element (none if unencrypted), and
        why that cipher (:func:`choose_cipher`)."""
        if method is None:
            return None, None, ""
        info = await self._advertised(peer)
        chosen, why = choose_cipher(
            self.plugins, method, cipher, info, peer, self.cipher_preference
        )
        secret = TransportSecret.generate(chosen)
        with _within(self.timeout, f"encrypting the transport secret for {peer} took too long"):
            envelope = await method.encrypt(secret, peer)
        return secret, build_security(content_name, secret.cipher, envelope), why

    async def open_security(
        self, security: etree._Element | None, peer: JID, initiator: JID
    ) -> TransportSecret | None:
        """Open the envelope ``peer`` sent (authenticated as the session's ``initiator``)."""
        if security is None:
            return None
        try:
            info = parse_security(security, self.plugins)
            method = self.plugins.envelope(info.envelope_type)
            with _within(self.timeout, f"opening the envelope of {peer} took too long"):
                opened = await method.decrypt(info.envelope, peer, info.cipher)
            check_envelope_sender(opened, initiator)
        except (SecurityError, JetError) as exc:
            # The envelope method's typed error stays available as __cause__.
            raise EncryptionFailed(f"cannot decrypt the transfer from {peer}: {exc}") from exc
        return opened.secret
