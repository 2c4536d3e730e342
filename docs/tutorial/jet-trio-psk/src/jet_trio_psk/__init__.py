"""A jet-trio envelope method that protects the transport secret with a pre-shared key.

Two people who share a 32-byte key (a file each keeps, exchanged in person) can send each other
files: the transport secret travels encrypted with AES-256-GCM under that key, bound to the
sender's and the recipient's addresses. Whoever holds the key can make envelopes: share one
key per pair of people, never more widely.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NAME = "psk-envelope"  # the entry-point name: this plugin's options are options[NAME]
NS = "urn:example:jet-trio-tutorial:psk:0"


class PskEnvelope(EnvelopeMethod):
    namespace = NS
    features = (NS,)

    def __init__(self, account: JID, key_file: Path) -> None:
        self.account = account.bare
        self.key_file = key_file
        self._key = b""

    async def start(self) -> None:
        # Called once before jet-trio advertises the method: a wrong key file stops the
        # program with this message (an EnvelopeError is for users to read).
        try:
            key = bytes.fromhex(self.key_file.read_text().strip())
        except (OSError, ValueError) as exc:
            raise EnvelopeError(
                f"{NAME}: cannot read the key file {self.key_file}: {exc}"
            ) from None
        if len(key) != 32:
            raise EnvelopeError(f"{NAME}: {self.key_file} must hold 32 bytes in hex")
        self._key = key

    def _aead(self) -> AESGCM:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM(self._key)

    async def encrypt(self, secret: TransportSecret, peer: JID) -> etree._Element:
        nonce = os.urandom(12)
        bound = f"{self.account} -> {peer.bare}".encode()  # who sends to whom
        sealed = self._aead().encrypt(nonce, secret.to_bytes(), bound)
        element = etree.fromstring(f"<psk xmlns='{NS}'/>")
        element.text = base64.b64encode(nonce + sealed).decode()
        return element

    async def decrypt(
        self, element: etree._Element, sender: JID, cipher: Cipher
    ) -> DecryptedEnvelope:
        from cryptography.exceptions import InvalidTag

        if element.tag != f"{{{NS}}}psk":
            raise EnvelopeError(f"not a {NAME} envelope: <{element.tag}>")
        try:
            raw = base64.b64decode(element.text or "", validate=True)
        except binascii.Error:
            raise EnvelopeError(f"the {NAME} envelope from {sender.bare} is not base64") from None
        bound = f"{sender.bare} -> {self.account}".encode()
        try:
            key_and_iv = self._aead().decrypt(raw[:12], raw[12:], bound)
        except (InvalidTag, ValueError):
            raise EnvelopeError(
                f"the {NAME} envelope from {sender.bare} was not made with our pre-shared key "
                "for this pair of addresses"
            ) from None
        # Authenticated: only a holder of the key could bind the sender's address to it.
        return DecryptedEnvelope(
            TransportSecret.from_bytes(key_and_iv, cipher), sender.bare, Trust.UNDECIDED, "psk"
        )


@hookimpl
def jet_register_envelopes(config: PluginConfig) -> list[EnvelopeMethod]:
    options = config.options.get(NAME, {})
    key_file = options.get("key_file")
    if key_file is None or config.account is None:
        return []  # not configured: no method (jet-trio plugins shows none)
    return [PskEnvelope(config.account, Path(key_file).expanduser())]
