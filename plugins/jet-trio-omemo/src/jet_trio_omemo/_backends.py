"""The two OMEMO backends, extended with key transport (an OMEMO message without payload whose
per-device key material is a key chosen by the caller), and their PEP nodes. (Their XML is in
:mod:`._codecs`.)

python-omemo builds key transport messages only with a key it draws itself
(:meth:`~omemo.backend.Backend.encrypt_empty`); JET needs the JET layer's transport secret in
them. :meth:`SessionManager.encrypt <omemo.session_manager.SessionManager.encrypt>` hands the
"plaintext" for each backend unchanged to :meth:`encrypt_plaintext`, so a :class:`KeyTransport`
plaintext (a ``bytes`` subclass carrying the key material) is turned into an empty content plus
that key material here, while the whole device, trust and session logic of ``encrypt`` is reused.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Final

import oldmemo
import oldmemo.oldmemo
import twomemo
import twomemo.twomemo
from lxml import etree

from ._xmlbase import DEVICE_LIST_OPTIONS, NodeSpec, node_spec

__all__ = [
    "DEVICE_LIST_OPTIONS",
    "OLDMEMO",
    "TWOMEMO",
    "JetOldmemo",
    "JetTwomemo",
    "KeyTransport",
    "NodeSpec",
    "et_to_lxml",
    "lxml_to_et",
    "node_spec",
]

OLDMEMO: Final = oldmemo.oldmemo.NAMESPACE
"""``eu.siacs.conversations.axolotl``: legacy OMEMO (0.3), what Dino and Conversations use."""
TWOMEMO: Final = twomemo.twomemo.NAMESPACE
"""``urn:xmpp:omemo:2``: OMEMO 0.8+."""


class KeyTransport(bytes):
    """An (empty) plaintext asking the backend for a key transport message.

    ``key`` becomes the per-device key material; ``iv`` the IV of the message (legacy OMEMO puts it
    in the header; OMEMO 2 has no IV and ignores it).
    """

    key: bytes
    iv: bytes

    def __new__(cls, key: bytes, iv: bytes) -> KeyTransport:
        self = super().__new__(cls, b"")
        self.key = bytes(key)
        self.iv = bytes(iv)
        return self


class JetOldmemo(oldmemo.Oldmemo):
    """Legacy OMEMO backend that can also make key transport messages with a given key and IV."""

    async def encrypt_plaintext(
        self, plaintext: bytes
    ) -> tuple[oldmemo.oldmemo.ContentImpl, oldmemo.oldmemo.PlainKeyMaterialImpl]:
        if isinstance(plaintext, KeyTransport):
            return (
                oldmemo.oldmemo.ContentImpl(b"", plaintext.iv),
                oldmemo.oldmemo.PlainKeyMaterialImpl(plaintext.key, b""),
            )
        return await super().encrypt_plaintext(plaintext)


class JetTwomemo(twomemo.Twomemo):
    """OMEMO 2 backend that can also make key transport messages with given key material.

    The key material is split the way the backend splits it on receive (32 bytes "key", the rest
    "auth tag"), so the receiver gets back exactly ``key`` by concatenating both.
    """

    async def encrypt_plaintext(
        self, plaintext: bytes
    ) -> tuple[twomemo.twomemo.ContentImpl, twomemo.twomemo.PlainKeyMaterialImpl]:
        if isinstance(plaintext, KeyTransport):
            size = twomemo.twomemo.PlainKeyMaterialImpl.KEY_LENGTH
            material = plaintext.key
            return (
                twomemo.twomemo.ContentImpl.make_empty(),
                twomemo.twomemo.PlainKeyMaterialImpl(material[:size], material[size:]),
            )
        return await super().encrypt_plaintext(plaintext)


def lxml_to_et(element: etree._Element) -> ET.Element:
    """Hand an lxml element (already parsed by jet-trio's hardened parser) to the ElementTree
    based codecs of oldmemo/twomemo (which only the tests use, to cross-check :mod:`._codecs`).
    The serialisation carries no DOCTYPE or entity."""
    return ET.fromstring(etree.tostring(element))


def et_to_lxml(element: ET.Element) -> etree._Element:
    """The reverse of :func:`lxml_to_et`, for elements the codecs built."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.fromstring(ET.tostring(element), parser)
