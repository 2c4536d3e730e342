"""Service discovery (XEP-0030) and entity capabilities (XEP-0115), sans-IO."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Final

from lxml import etree

from .._errors import RemoteProtocolError
from . import ns as _ns
from .stanza import E

__all__ = ["DiscoInfo", "DiscoItem", "Identity", "caps_element", "caps_ver", "parse_caps"]

CAPS_NODE: Final = "https://jet-trio.invalid/caps"
_Q_INFO: Final = f"{{{_ns.DISCO_INFO}}}query"
_Q_ITEMS: Final = f"{{{_ns.DISCO_ITEMS}}}query"


@dataclass(frozen=True, slots=True, order=True)
class Identity:
    """A disco identity (``category``/``type``, optional ``name`` and ``lang``)."""

    category: str
    type: str
    lang: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class DiscoInfo:
    """What an entity said about itself in disco#info."""

    #: The identities (category, type, name) it announced.
    identities: frozenset[Identity] = frozenset()
    #: The features (namespaces) it supports.
    features: frozenset[str] = frozenset()
    #: The node queried, if any (entity capabilities use ``CAPS_NODE#ver``).
    node: str | None = None
    #: Extended information: XEP-0128 data forms, as elements.
    forms: tuple[etree._Element, ...] = field(default=(), compare=False)

    def has(self, *features: str) -> bool:
        """True if every one of ``features`` is advertised."""
        return all(f in self.features for f in features)

    def to_element(self) -> etree._Element:
        """The ``<query xmlns='http://jabber.org/protocol/disco#info'/>`` element."""
        q = E(_Q_INFO, {"node": self.node})
        for ident in sorted(self.identities):
            q.append(
                E(
                    f"{{{_ns.DISCO_INFO}}}identity",
                    {
                        "category": ident.category,
                        "type": ident.type,
                        "name": ident.name or None,
                        f"{{{_ns.XML}}}lang": ident.lang or None,
                    },
                )
            )
        for feature in sorted(self.features):
            q.append(E(f"{{{_ns.DISCO_INFO}}}feature", {"var": feature}))
        return q

    @classmethod
    def from_element(cls, query: etree._Element) -> DiscoInfo:
        """Read a disco#info ``<query/>``; raises :class:`~jet_trio.RemoteProtocolError`."""
        if query.tag != _Q_INFO:
            raise RemoteProtocolError(f"expected a disco#info query, got <{query.tag}>")
        idents = frozenset(
            Identity(
                i.get("category", ""),
                i.get("type", ""),
                i.get(f"{{{_ns.XML}}}lang", ""),
                i.get("name", ""),
            )
            for i in query.iterfind(f"{{{_ns.DISCO_INFO}}}identity")
        )
        feats = frozenset(f.get("var", "") for f in query.iterfind(f"{{{_ns.DISCO_INFO}}}feature"))
        forms = tuple(query.iterfind(f"{{{_ns.DATA_FORMS}}}x"))
        return cls(idents, feats - {""}, query.get("node"), forms)


@dataclass(frozen=True, slots=True)
class DiscoItem:
    """One disco#items entry."""

    #: The entity's JID.
    jid: str
    #: The node, if the item is one.
    node: str | None = None
    #: A human-readable name, if given.
    name: str | None = None


def parse_items(query: etree._Element) -> list[DiscoItem]:
    """Read a disco#items result."""
    if query.tag != _Q_ITEMS:
        raise RemoteProtocolError(f"expected a disco#items query, got <{query.tag}>")
    return [
        DiscoItem(i.get("jid", ""), i.get("node"), i.get("name"))
        for i in query.iterfind(f"{{{_ns.DISCO_ITEMS}}}item")
        if i.get("jid")
    ]


def caps_ver(info: DiscoInfo) -> str:
    """The XEP-0115 verification string (sha-1) of ``info`` (data forms are not included)."""
    parts = [f"{i.category}/{i.type}/{i.lang}/{i.name}<" for i in sorted(info.identities)]
    parts.extend(f"{f}<" for f in sorted(info.features))
    return base64.b64encode(hashlib.sha1("".join(parts).encode()).digest()).decode()


def caps_element(info: DiscoInfo, node: str = CAPS_NODE) -> etree._Element:
    """The ``<c/>`` element to put in presence."""
    return E(f"{{{_ns.CAPS}}}c", {"hash": "sha-1", "node": node, "ver": caps_ver(info)})


def parse_caps(presence: etree._Element) -> tuple[str, str, str] | None:
    """``(hash, node, ver)`` of the presence's caps, or ``None``."""
    c = presence.find(f"{{{_ns.CAPS}}}c")
    if c is None or not c.get("ver") or not c.get("node"):
        return None
    return c.get("hash", ""), c.get("node", ""), c.get("ver", "")
