"""An in-memory stand-in for the PEP part of :class:`jet_trio.Client` (no sockets)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import cast

from jet_trio import JID, Client, DiscoInfo, PubSubEvent, PubSubItem, StanzaError
from lxml import etree

from jet_trio_openpgp import FEATURE


class FakePEP:
    """PEP nodes of every account, shared by the fake clients of one test."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[JID, str], dict[str, etree._Element]] = {}
        self.options: dict[tuple[JID, str], dict[str, str]] = {}
        self.followers: list[FakeClient] = []
        self.without_feature: set[JID] = set()

    def client(self, jid: str) -> FakeClient:
        c = FakeClient(JID(jid), self)
        self.followers.append(c)
        return c


class FakeClient:
    def __init__(self, jid: JID, pep: FakePEP) -> None:
        self.jid = jid
        self.pep = pep
        self.handlers: dict[str, list[Callable[[JID, PubSubEvent], None]]] = {}
        self.gets = 0

    def as_client(self) -> Client:
        return cast(Client, self)

    async def features_of(self, jid: JID) -> DiscoInfo:
        if jid.bare in self.pep.without_feature:
            return DiscoInfo()
        return DiscoInfo(features=frozenset({FEATURE}))

    async def on_pep(
        self, node: str, callback: Callable[[JID, PubSubEvent], None], *, notify: bool = True
    ) -> Callable[[], None]:
        self.handlers.setdefault(node, []).append(callback)
        return lambda: self.handlers[node].remove(callback)

    async def publish(
        self,
        node: str,
        payload: etree._Element,
        *,
        item_id: str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> None:
        key = (self.jid.bare, node)
        self.pep.nodes.setdefault(key, {})[item_id or "current"] = payload
        self.pep.options[key] = dict(options or {})
        event = PubSubEvent(node, (PubSubItem(item_id, payload),), ())
        for other in self.pep.followers:
            for cb in list(other.handlers.get(node, ())):
                cb(self.jid.bare, event)

    async def get_items(
        self,
        jid: JID | str,
        node: str,
        *,
        item_ids: Sequence[str] = (),
        max_items: int | None = None,
    ) -> list[PubSubItem]:
        self.gets += 1
        items = self.pep.nodes.get((JID(jid).bare, node))
        if items is None:
            raise StanzaError("item-not-found")
        out = [PubSubItem(i, p) for i, p in items.items()]
        return out[-max_items:] if max_items else out
