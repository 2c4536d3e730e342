"""The entry point's OpenPGP envelope: checked cheaply at start, started in full on first use.

A receiver (``jet-trio receive``, ``share``) loads every installed envelope method and may never
get an OpenPGP offer, so :meth:`PreparedOpenPGPEnvelope.start` only checks, with two PEP reads
and without pysequoia, that what peers rely on is in place: our key's fingerprint in our
published key list and our public key, byte for byte, in its node (the copy the full service
keeps next to the secret key, :data:`~._keys.PUBLIC_FILE`). The full :class:`~._openpgp.OpenPGP`
service (pysequoia, our secret key, the trust store) starts when the method is used (an offer
to open, a transfer to seal, the key store), and at start already when the check finds our key
or its metadata missing, foreign or not yet made: it then publishes them again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import trio
from jet_trio import JID, Client, StanzaError
from jet_trio.plugin import (
    Cipher,
    DecryptedEnvelope,
    EnvelopeMethod,
    KeyNotice,
    KeyRecord,
    KeyStore,
    TransportSecret,
)
from lxml import etree

from ._errors import MalformedEnvelope, NoPublicKey
from ._hooks import FEATURE, INSTALL_HINT, NS, SHORT_NAME
from ._pep import PUBLIC_KEYS_NODE, key_node, parse_key_list, parse_pubkey

if TYPE_CHECKING:
    from ._openpgp import OpenPGP

__all__ = ["PreparedOpenPGPEnvelope"]

logger = logging.getLogger("jet_trio_openpgp")

META_FILE = "key.json"  # _keys.META_FILE
SECRET_FILE = "secret-key.asc"  # _keys.SECRET_FILE
_ARMOR_MESSAGE = b"-----BEGIN PGP MESSAGE-----"  # _keys._ARMOR_MESSAGE
PUBLIC_FILE = "public-key.pgp"  # _keys.PUBLIC_FILE


class PreparedOpenPGPEnvelope(EnvelopeMethod):
    """The OpenPGP envelope method (``urn:xmpp:openpgp:0``) whose service starts on first use.

    Behaves as :class:`~jet_trio_openpgp.OpenPGPEnvelope` once started; :attr:`started` and
    :attr:`start_reason` tell whether and why the full service was started.
    """

    namespace = NS
    features = (FEATURE,)
    short_name = SHORT_NAME
    install_hint = INSTALL_HINT

    def __init__(
        self,
        client: Client,
        directory: Path,
        *,
        passphrase: str | None = None,
        policy: str = "tofu",
        max_clock_skew: timedelta | None = None,
        notify: Callable[[KeyNotice], None] | None = None,
    ) -> None:
        self.client = client
        self.directory = directory
        self._passphrase = passphrase
        self._policy = policy
        self._max_clock_skew = max_clock_skew
        self._notify = notify
        self._checked = False
        self._service: OpenPGP | None = None
        self._lock = trio.Lock()
        self.start_reason: str | None = None
        """Why the full service was started (``None``: not started)."""
        self.key_store = _PreparedKeys(self)

    @property
    def started(self) -> bool:
        """Whether the full service (pysequoia, our secret key) runs."""
        return self._service is not None

    async def start(self) -> None:
        """Check that our key and key list are published; start in full when they are not."""
        if self._checked or self._service is not None:
            return
        problem = await self._published_problem()
        if problem:
            await self.service(problem)
        else:
            # Advertise what the full service follows, so that what peers see does not change
            # when it starts.
            await self.client.add_features(f"{PUBLIC_KEYS_NODE}+notify")
        self._checked = True

    async def service(self, reason: str = "the envelope method is used") -> OpenPGP:
        """The full service, started now if not yet (``reason`` is kept in :attr:`start_reason`)."""
        async with self._lock:
            if self._service is None:
                from ._openpgp import OpenPGP, TrustPolicy
                from ._signcrypt import DEFAULT_MAX_CLOCK_SKEW

                skew = self._max_clock_skew
                service = OpenPGP(
                    self.client,
                    self.directory,
                    passphrase=self._passphrase,
                    policy=TrustPolicy(self._policy),
                    # The check found both in place: loading the key is enough.
                    publish=not self._checked,
                    notify=self._notify,
                    max_clock_skew=DEFAULT_MAX_CLOCK_SKEW if skew is None else skew,
                )
                logger.info("starting OpenPGP: %s", reason)
                await service.start()
                self._service, self.start_reason = service, reason
            return self._service

    async def _published_problem(self) -> str:
        """What is missing from what we published ("" when all is in place), without
        pysequoia."""
        own = self.client.jid.bare
        try:
            meta = json.loads((self.directory / META_FILE).read_text())
            cert = (self.directory / PUBLIC_FILE).read_bytes()
            head = (self.directory / SECRET_FILE).read_bytes()[:64]
        except (OSError, ValueError):
            return "no OpenPGP key of ours is stored yet"
        if head.lstrip().startswith(_ARMOR_MESSAGE):
            # As before: a wrong or missing passphrase is said at start, not at the first offer.
            return "our OpenPGP key is protected by a passphrase (checked at start)"
        fpr = str(meta.get("fingerprint", "")).upper() if isinstance(meta, dict) else ""
        if not fpr or meta.get("account") != str(own):
            return f"the stored OpenPGP key is not one of {own}"
        try:
            lists = await self.client.get_items(own, PUBLIC_KEYS_NODE, max_items=1)
            listed = [k.fingerprint for i in lists[-1:] for k in parse_key_list(i.payload)]
        except (StanzaError, MalformedEnvelope):
            listed = []
        if fpr not in listed:
            return "our OpenPGP key is not in our published key list"
        try:
            items = await self.client.get_items(own, key_node(fpr), max_items=1)
            published = [parse_pubkey(i.payload, str(own)) for i in items[-1:]]
        except (StanzaError, NoPublicKey):
            published = []
        if published != [cert]:
            return "our OpenPGP key is not published (or another one is in its node)"
        return ""

    async def encrypt(self, secret: TransportSecret, peer: JID) -> etree._Element:
        return await (await self.service()).seal(secret, peer)

    async def decrypt(
        self, element: etree._Element, sender: JID, cipher: Cipher
    ) -> DecryptedEnvelope:
        return await (await self.service("an OpenPGP offer")).open(element, sender, cipher)

    async def aclose(self) -> None:
        """Stop the full service's following of key lists, if it runs."""
        if self._service is not None:
            await self._service.aclose()


class _PreparedKeys(KeyStore):
    """The key store of :class:`PreparedOpenPGPEnvelope`: starts the service when used."""

    name = "openpgp"
    title = "OpenPGP keys"

    def __init__(self, envelope: PreparedOpenPGPEnvelope) -> None:
        self._envelope = envelope

    async def _keys(self) -> KeyStore:
        from ._openpgp import OpenPGPKeys

        return OpenPGPKeys(await self._envelope.service("the key store is used"))

    async def list_keys(self, jid: JID) -> list[KeyRecord]:
        return await (await self._keys()).list_keys(jid)

    async def set_trust(self, key: KeyRecord, trusted: bool) -> KeyRecord:
        return await (await self._keys()).set_trust(key, trusted)
