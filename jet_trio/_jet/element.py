"""The JET ``<security xmlns='urn:xmpp:jingle:jet:0'>`` element: build and parse.

Sent as XEP-0391 and Conversations >= 2.13.4 want it: a child of ``<content>`` with ``name`` (the
content name), ``cipher`` (URN without ``:0``) and ``type`` (the envelope namespace), holding the
envelope element. Accepted on receive as well: ``cipher`` with ``:0``, no ``name`` (Dino), and
``<security>`` directly under ``<jingle>`` (Conversations 2.13.0-2.13.3); which ``<security>``
applies to a content is decided in one place, ``content_security`` of the Jingle codec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from lxml import etree

from .._errors import RemoteProtocolError
from .._xmpp import ns as _ns
from .cipher import Cipher

__all__ = [
    "CipherLookup",
    "SecurityElementError",
    "SecurityInfo",
    "build_security",
    "parse_security",
]

SECURITY = f"{{{_ns.JET}}}security"


class SecurityElementError(RemoteProtocolError):
    """A malformed or misplaced ``<security>`` element."""


class CipherLookup(Protocol):
    """Anything that finds a cipher by URN (a
    :class:`~jet_trio._plugins.manager.PluginManager`)."""

    def cipher(self, urn: str) -> Cipher:
        """Return the cipher or raise :class:`~jet_trio._jet.cipher.UnknownCipher`."""
        ...


@dataclass(frozen=True, slots=True)
class SecurityInfo:
    """A parsed ``<security>``: ``envelope`` is to be opened by the method for ``envelope_type``."""

    name: str | None
    cipher: Cipher
    envelope_type: str
    envelope: etree._Element


def build_security(content_name: str, cipher: Cipher, envelope: etree._Element) -> etree._Element:
    """``<security>`` for a content; ``type`` is the envelope element's namespace."""
    envelope_type = etree.QName(envelope).namespace
    if not envelope_type:
        raise ValueError("the envelope element has no namespace")
    el = etree.Element(
        SECURITY,
        {"name": content_name, "cipher": cipher.urn, "type": envelope_type},
        nsmap={None: _ns.JET},  # type: ignore[dict-item]
    )
    el.append(envelope)
    return el


def parse_security(element: etree._Element, ciphers: CipherLookup) -> SecurityInfo:
    """Read a ``<security>`` element; the cipher is resolved through ``ciphers``.

    Raises :class:`SecurityElementError` for a malformed element and
    :class:`~jet_trio._jet.cipher.UnknownCipher` for a cipher no plugin provides.
    """
    if element.tag != SECURITY:
        raise SecurityElementError(f"expected JET <security>, got {element.tag!r}")
    cipher_urn = element.get("cipher")
    if not cipher_urn:
        raise SecurityElementError("<security> has no cipher attribute")
    envelope_type = element.get("type")
    if not envelope_type:
        raise SecurityElementError("<security> has no type attribute (the envelope method)")
    cipher = ciphers.cipher(cipher_urn.strip())
    envelopes = [
        child
        for child in element
        if isinstance(child.tag, str) and etree.QName(child).namespace == envelope_type
    ]
    if not envelopes:
        raise SecurityElementError(
            f"<security> holds no envelope element of type {envelope_type!r}"
        )
    if len(envelopes) > 1:
        raise SecurityElementError(f"<security> holds several envelopes of type {envelope_type!r}")
    return SecurityInfo(
        name=element.get("name"),
        cipher=cipher,
        envelope_type=envelope_type,
        envelope=envelopes[0],
    )
