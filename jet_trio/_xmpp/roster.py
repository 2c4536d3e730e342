"""Roster and presence subscriptions (RFC 6121 sections 2 and 3), sans-IO builders and readers.

Whether we see a contact's presence (and so can find the resources to send a file to) depends
on the subscription state of the roster item: ``to`` or ``both``. These functions build the
roster queries and subscription presences, and read the server's answers and pushes, with
every item checked (a valid JID, a known subscription state) and the number of items bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, cast

from lxml import etree

from .._errors import RemoteProtocolError
from . import ns as _ns
from .jid import JID, InvalidJID
from .stanza import PRESENCE, E

__all__ = [
    "MAX_ROSTER_ITEMS",
    "RosterItem",
    "Subscription",
    "SubscriptionRequest",
    "parse_roster",
    "parse_roster_push",
    "parse_subscription_presence",
    "roster_query",
    "roster_remove",
    "roster_set",
    "subscription_presence",
]

Subscription = Literal["none", "to", "from", "both"]
SubscriptionType = Literal["subscribe", "subscribed", "unsubscribe", "unsubscribed"]

_SUBSCRIPTIONS: Final = frozenset({"none", "to", "from", "both"})
_SUBSCRIPTION_TYPES: Final = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})
_QUERY: Final = f"{{{_ns.ROSTER}}}query"
_ITEM: Final = f"{{{_ns.ROSTER}}}item"
_GROUP: Final = f"{{{_ns.ROSTER}}}group"

#: A roster longer than this is refused (a server, not a contact, sends it; the bound keeps a
#: broken one from making us build an unbounded list).
MAX_ROSTER_ITEMS: Final = 10_000
#: Names and group names longer than this are cut (they are only shown).
_MAX_TEXT: Final = 1024


@dataclass(frozen=True, slots=True)
class RosterItem:
    """One contact of the roster (RFC 6121 2.1.2)."""

    jid: JID
    subscription: Subscription = "none"
    #: We asked to see their presence and they have not answered yet (``ask="subscribe"``).
    pending_out: bool = False
    name: str | None = None
    groups: tuple[str, ...] = ()

    @property
    def we_see_them(self) -> bool:
        """Their presence comes to us: we can find their online resources."""
        return self.subscription in ("to", "both")

    @property
    def they_see_us(self) -> bool:
        return self.subscription in ("from", "both")


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    """A subscription presence received from ``jid`` (``subscribe``: they ask to see ours)."""

    jid: JID
    type: SubscriptionType


def roster_query() -> etree._Element:
    """The payload of the roster get (RFC 6121 2.1.3)."""
    return E(_QUERY)


def roster_set(
    jid: JID, *, name: str | None = None, groups: tuple[str, ...] = ()
) -> etree._Element:
    """The payload of a roster set adding or updating ``jid`` (RFC 6121 2.3)."""
    item = E(_ITEM, {"jid": str(jid.bare), "name": name or None})
    for group in groups:
        item.append(E(_GROUP, text=group))
    return E(_QUERY, None, item)


def roster_remove(jid: JID) -> etree._Element:
    """The payload of a roster set removing ``jid``, which also cancels both subscriptions
    (RFC 6121 2.5)."""
    return E(_QUERY, None, E(_ITEM, {"jid": str(jid.bare), "subscription": "remove"}))


def subscription_presence(jid: JID, type_: SubscriptionType) -> etree._Element:
    """A subscription presence to the bare ``jid`` (RFC 6121 3)."""
    if type_ not in _SUBSCRIPTION_TYPES:
        raise ValueError(f"not a subscription presence type: {type_!r}")
    return E(PRESENCE, {"to": str(jid.bare), "type": type_})


def _item(el: etree._Element, *, push: bool) -> RosterItem | None:
    """One ``<item/>``; ``None`` for a push that removes it."""
    raw = el.get("jid")
    if not raw:
        raise RemoteProtocolError("a roster item without a jid")
    try:
        jid = JID(raw)
    except InvalidJID as exc:
        raise RemoteProtocolError(f"a roster item with an invalid jid: {exc}") from None
    subscription = el.get("subscription", "none")
    if subscription == "remove" and push:
        return None
    if subscription not in _SUBSCRIPTIONS:
        raise RemoteProtocolError(f"a roster item with subscription {subscription!r}")
    groups = tuple((g.text or "")[:_MAX_TEXT] for g in el.findall(_GROUP) if (g.text or "").strip())
    name = el.get("name")
    return RosterItem(
        jid=jid.bare,
        subscription=cast(Subscription, subscription),
        pending_out=el.get("ask") == "subscribe",
        name=name[:_MAX_TEXT] if name else None,
        groups=groups,
    )


def parse_roster(query: etree._Element | None) -> list[RosterItem]:
    """The items of a roster result (``None``: an empty result, which RFC 6121 2.1.3 allows
    when nothing changed; read as no items)."""
    if query is None:
        return []
    if query.tag != _QUERY:
        raise RemoteProtocolError(f"expected a roster query, got <{query.tag}>")
    elements = query.findall(_ITEM)
    if len(elements) > MAX_ROSTER_ITEMS:
        raise RemoteProtocolError(f"the roster has more than {MAX_ROSTER_ITEMS} items")
    items: dict[JID, RosterItem] = {}
    for el in elements:
        item = _item(el, push=False)
        assert item is not None
        items[item.jid] = item
    return sorted(items.values(), key=lambda i: str(i.jid))


def parse_roster_push(iq: etree._Element, own: JID) -> tuple[JID, RosterItem | None]:
    """A roster push (an iq ``set`` with one item): the contact and its new item, ``None`` if
    it was removed. RFC 6121 2.1.6: a push from anyone but our own account (or the server on
    its behalf, no ``from``) is refused: it would let a contact rewrite our roster."""
    sender = iq.get("from")
    if sender is not None:
        try:
            from_jid = JID(sender)
        except InvalidJID:
            from_jid = None
        if from_jid is None or from_jid != own.bare:
            raise RemoteProtocolError(f"a roster push from {sender!r}, not from our own account")
    query = iq.find(_QUERY)
    if query is None:
        raise RemoteProtocolError("a roster push without a roster query")
    elements = query.findall(_ITEM)
    if len(elements) != 1:
        raise RemoteProtocolError(f"a roster push must carry one item, not {len(elements)}")
    item = _item(elements[0], push=True)
    if item is None:
        return JID(elements[0].get("jid", "")).bare, None
    return item.jid, item


def parse_subscription_presence(presence: etree._Element) -> SubscriptionRequest | None:
    """The subscription request or answer a presence carries; ``None`` for other presence
    (or one without a valid ``from``)."""
    type_ = presence.get("type")
    if type_ not in _SUBSCRIPTION_TYPES:
        return None
    try:
        jid = JID(presence.get("from", ""))
    except InvalidJID:
        return None
    return SubscriptionRequest(jid.bare, cast(SubscriptionType, type_))
