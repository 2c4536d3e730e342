"""A small, complete envelope method plugin: a pre-shared key per contact.

For the plugin author guide. Each pair of contacts configures the same random 32-byte key for
each other, as plugin options::

    PluginConfig(account=me, options={"psk-envelope": {"bob@example.org": "<64 hex digits>"}})

The transport secret is sealed with AES-256-GCM under that key. The associated data binds the
envelope to its direction (sender and recipient bare JIDs), so opening it proves that it was
made by the holder of the key shared with the sender, for us: that is the authentication that
``decrypt`` must perform. A real method would also protect against replays (e.g. a timestamp
or a counter in the associated data); OMEMO and OpenPGP do.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from lxml import etree

from jet_trio import JID
from jet_trio.plugin import (
    Cipher,
    DecryptedEnvelope,
    EnvelopeError,
    EnvelopeMethod,
    PluginConfig,
    TransportSecret,
    Trust,
    hookimpl,
)

NAME = "psk-envelope"  # the key of config.options for this plugin
NS = "urn:example:jet-psk:0"
ENVELOPE = f"{{{NS}}}envelope"


def _aad(sender: JID, recipient: JID) -> bytes:
    return f"jet-psk|{sender.bare}|{recipient.bare}".encode()


class PSKEnvelope(EnvelopeMethod):
    namespace = NS
    features = (NS,)

    def __init__(self, account: JID, keys: dict[JID, bytes]) -> None:
        self.account = account
        self.keys = keys

    def _key(self, peer: JID) -> bytes:
        try:
            return self.keys[peer.bare]
        except KeyError:
            raise EnvelopeError(f"no pre-shared key is configured for {peer.bare}") from None

    async def encrypt(self, secret: TransportSecret, peer: JID) -> etree._Element:
        nonce = os.urandom(12)
        sealed = AESGCM(self._key(peer)).encrypt(nonce, secret.to_bytes(), _aad(self.account, peer))
        element = etree.Element(ENVELOPE, nsmap={None: NS})  # type: ignore[dict-item]
        element.set("nonce", base64.b64encode(nonce).decode())
        element.text = base64.b64encode(sealed).decode()
        return element

    async def decrypt(
        self, element: etree._Element, sender: JID, cipher: Cipher
    ) -> DecryptedEnvelope:
        if element.tag != ENVELOPE:
            raise EnvelopeError(f"expected a PSK <envelope>, got {element.tag}")
        try:
            nonce = base64.b64decode(element.get("nonce", ""), validate=True)
            sealed = base64.b64decode(element.text or "", validate=True)
            raw = AESGCM(self._key(sender)).decrypt(nonce, sealed, _aad(sender, self.account))
        except (binascii.Error, ValueError, InvalidTag):
            raise EnvelopeError(
                f"the envelope from {sender.bare} does not open with the key shared with them"
            ) from None
        return DecryptedEnvelope(
            secret=TransportSecret.from_bytes(raw, cipher),
            sender_identity=sender.bare,  # proven: only the key shared with them opens it
            trust=Trust.VERIFIED,  # the user exchanged the key out of band
            detail="pre-shared key",
        )


@hookimpl
def jet_register_envelopes(config: PluginConfig) -> list[EnvelopeMethod]:
    options = config.options.get(NAME, {})
    if config.account is None or not options:
        return []  # not configured: offer nothing
    keys = {JID(jid).bare: bytes.fromhex(key) for jid, key in options.items()}
    return [PSKEnvelope(config.account, keys)]
