"""Personal Eventing Protocol (XEP-0163) node store: the subset of XEP-0060 OMEMO needs. Sans-IO.

Handles the ``pubsub`` / ``pubsub#owner`` payload of an iq addressed to an account, returns the
payload of the result and the notifications to send; who receives them is the router's business.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from lxml import etree

from .._xmpp import ns as ns
from .._xmpp.jid import JID
from ._elements import Element, StanzaError, form_fields, make, make_form, qname, sub

NODE_CONFIG = f"{ns.PUBSUB}#node_config"
PUBLISH_OPTIONS = f"{ns.PUBSUB}#publish-options"
MAX_ITEMS_CAP = 256
_BOOLEAN_FIELDS = frozenset(
    {
        "pubsub#persist_items",
        "pubsub#notify_retract",
        "pubsub#notify_delete",
        "pubsub#deliver_payloads",
    }
)
DEFAULT_CONFIG: Mapping[str, str] = {
    "pubsub#access_model": "presence",
    "pubsub#max_items": "max",
    "pubsub#persist_items": "true",
    "pubsub#notify_retract": "true",
    "pubsub#notify_delete": "true",
    "pubsub#deliver_payloads": "true",
    "pubsub#send_last_published_item": "on_sub_and_presence",
    "pubsub#publish_model": "publishers",
}
ACCESS_MODELS = frozenset({"open", "presence", "roster", "whitelist", "authorize"})

# Features advertised for the PEP service (disco#info of the server and of accounts).
FEATURES = tuple(
    f"{ns.PUBSUB}#{name}"
    for name in (
        "publish",
        "publish-options",
        "auto-create",
        "create-nodes",
        "config-node",
        "delete-nodes",
        "retract-items",
        "retrieve-items",
        "persistent-items",
        "last-published",
        "access-open",
        "access-presence",
        "access-whitelist",
    )
)


def _precondition() -> StanzaError:
    return StanzaError("conflict", "cancel", make(qname(ns.PUBSUB_ERRORS, "precondition-not-met")))


def _pubsub_error(condition: str, app: str, error_type: str = "modify") -> StanzaError:
    return StanzaError(condition, error_type, make(qname(ns.PUBSUB_ERRORS, app)))


def _normalize(var: str, value: str) -> str:
    value = value.strip()
    if var in _BOOLEAN_FIELDS:
        if value in ("1", "true"):
            return "true"
        if value in ("0", "false"):
            return "false"
        raise StanzaError("not-acceptable", "modify")
    if var == "pubsub#max_items" and value != "max":
        if not value.isdigit() or int(value) < 1:
            raise StanzaError("not-acceptable", "modify")
        return str(int(value))
    if var == "pubsub#access_model" and value not in ACCESS_MODELS:
        raise StanzaError("not-acceptable", "modify")
    return value


def _options(form: Element | None) -> dict[str, str]:
    if form is None:
        return {}
    fields = form_fields(form)
    fields.pop("FORM_TYPE", None)
    return fields


@dataclass
class Node:
    """One PEP node: its configuration and items, oldest first."""

    name: str
    config: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CONFIG))
    items: dict[str, Element] = field(default_factory=dict)

    @property
    def access_model(self) -> str:
        return self.config["pubsub#access_model"]

    @property
    def max_items(self) -> int:
        value = self.config["pubsub#max_items"]
        return MAX_ITEMS_CAP if value == "max" else min(int(value), MAX_ITEMS_CAP)

    def configure(self, options: Mapping[str, str]) -> None:
        new = dict(self.config)
        for var, value in options.items():
            if var not in DEFAULT_CONFIG:
                raise StanzaError("not-acceptable", "modify")
            new[var] = _normalize(var, value)
        self.config = new
        self._trim()

    def _trim(self) -> None:
        while len(self.items) > self.max_items:
            del self.items[next(iter(self.items))]


@dataclass(frozen=True)
class Notification:
    """``event`` (a ``pubsub#event`` element) is to be sent for ``owner``'s ``node``."""

    owner: JID
    node: str
    event: Element
    access_model: str


def _event(node: str, *children: Element) -> Element:
    event = make(qname(ns.PUBSUB_EVENT, "event"))
    items = sub(event, qname(ns.PUBSUB_EVENT, "items"), {"node": node})
    for child in children:
        items.append(child)
    return event


def _item_event(node: str, item: Element) -> Element:
    copied = make(qname(ns.PUBSUB_EVENT, "item"), {"id": item.get("id")})
    for child in item:
        copied.append(copy.deepcopy(child))
    return _event(node, copied)


class PepService:
    """All accounts' PEP nodes."""

    def __init__(self) -> None:
        self._nodes: dict[JID, dict[str, Node]] = {}

    def nodes(self, owner: JID) -> dict[str, Node]:
        """``owner``'s nodes by name (a live view; do not mutate)."""
        return self._nodes.get(owner.bare, {})

    def may_read(self, owner: JID, reader: JID, access_model: str) -> bool:
        """Every account is a mutual contact: only whitelist/authorize nodes are owner-only."""
        return reader.bare == owner.bare or access_model not in ("whitelist", "authorize")

    def last_item_event(self, owner: JID, name: str) -> Element | None:
        """The notification carrying the last published item of a node, if any."""
        node = self.nodes(owner).get(name)
        if node is None or not node.items:
            return None
        last = next(reversed(node.items.values()))
        return _item_event(name, last)

    def handle(
        self, owner: JID, requester: JID, iq: Element
    ) -> tuple[Element | None, list[Notification]]:
        """Process a pubsub iq addressed to ``owner``; raises :class:`StanzaError`."""
        owner = owner.bare
        is_set = iq.get("type") == "set"
        pubsub = iq.find(qname(ns.PUBSUB, "pubsub"))
        if pubsub is not None:
            for child in pubsub:
                tag = etree.QName(child).localname
                if is_set and tag == "publish":
                    return self._publish(owner, requester, pubsub, child)
                if is_set and tag == "retract":
                    return self._retract(owner, requester, child)
                if is_set and tag == "create":
                    return self._create(owner, requester, pubsub, child)
                if not is_set and tag == "items":
                    return self._items(owner, requester, child), []
        pubsub = iq.find(qname(ns.PUBSUB_OWNER, "pubsub"))
        if pubsub is not None:
            self._check_owner(owner, requester)
            for child in pubsub:
                tag = etree.QName(child).localname
                if is_set and tag == "delete":
                    return self._delete(owner, child)
                if tag == "configure":
                    return self._configure(owner, child, is_set), []
        raise StanzaError("feature-not-implemented")

    # -- operations ----------------------------------------------------------------------------

    def _check_owner(self, owner: JID, requester: JID) -> None:
        if requester.bare != owner:
            raise StanzaError("forbidden", "auth")

    def _node_name(self, element: Element) -> str:
        name = element.get("node")
        if not name:
            raise _pubsub_error("bad-request", "nodeid-required")
        return name

    def _existing(self, owner: JID, element: Element) -> Node:
        node = self.nodes(owner).get(self._node_name(element))
        if node is None:
            raise StanzaError("item-not-found")
        return node

    def _new_node(self, owner: JID, name: str, options: Mapping[str, str]) -> Node:
        node = Node(name)
        node.configure(options)
        self._nodes.setdefault(owner, {})[name] = node
        return node

    def _publish(
        self, owner: JID, requester: JID, pubsub: Element, publish: Element
    ) -> tuple[Element, list[Notification]]:
        self._check_owner(owner, requester)
        name = self._node_name(publish)
        items = publish.findall(qname(ns.PUBSUB, "item"))
        if len(items) != 1:
            raise _pubsub_error("bad-request", "item-required")
        item = items[0]
        if len(item) != 1:
            raise _pubsub_error("bad-request", "invalid-payload")
        options = _options(
            pubsub.find(f"{qname(ns.PUBSUB, 'publish-options')}/{qname(ns.DATA_FORMS, 'x')}")
        )
        node = self.nodes(owner).get(name)
        if node is None:
            try:
                node = self._new_node(owner, name, options)
            except StanzaError:
                raise _precondition() from None
        else:
            for var, value in options.items():
                current = node.config.get(var)
                try:
                    matches = current is not None and _normalize(var, value) == current
                except StanzaError:
                    matches = False
                if not matches:
                    raise _precondition()
        item_id = item.get("id") or secrets.token_hex(8)
        stored = make(qname(ns.PUBSUB, "item"), {"id": item_id})
        stored.append(copy.deepcopy(item[0]))
        node.items.pop(item_id, None)
        node.items[item_id] = stored
        node._trim()
        result = make(qname(ns.PUBSUB, "pubsub"))
        published = sub(result, qname(ns.PUBSUB, "publish"), {"node": name})
        sub(published, qname(ns.PUBSUB, "item"), {"id": item_id})
        return result, [Notification(owner, name, _item_event(name, stored), node.access_model)]

    def _create(
        self, owner: JID, requester: JID, pubsub: Element, create: Element
    ) -> tuple[Element | None, list[Notification]]:
        self._check_owner(owner, requester)
        name = self._node_name(create)
        if name in self.nodes(owner):
            raise StanzaError("conflict")
        form = pubsub.find(f"{qname(ns.PUBSUB, 'configure')}/{qname(ns.DATA_FORMS, 'x')}")
        self._new_node(owner, name, _options(form))
        return None, []

    def _retract(
        self, owner: JID, requester: JID, retract: Element
    ) -> tuple[Element | None, list[Notification]]:
        self._check_owner(owner, requester)
        node = self._existing(owner, retract)
        ids = [item.get("id") for item in retract.iterfind(qname(ns.PUBSUB, "item"))]
        if len(ids) != 1 or not ids[0]:
            raise _pubsub_error("bad-request", "item-required")
        item_id = ids[0]
        if item_id not in node.items:
            raise StanzaError("item-not-found")
        del node.items[item_id]
        if retract.get("notify") not in ("1", "true"):
            return None, []
        event = _event(node.name, make(qname(ns.PUBSUB_EVENT, "retract"), {"id": item_id}))
        return None, [Notification(owner, node.name, event, node.access_model)]

    def _items(self, owner: JID, requester: JID, request: Element) -> Element:
        node = self._existing(owner, request)
        if not self.may_read(owner, requester, node.access_model):
            raise _pubsub_error("forbidden", "closed-node", "auth")
        wanted = [item.get("id") for item in request.iterfind(qname(ns.PUBSUB, "item"))]
        if wanted:
            selected = [node.items[i] for i in wanted if i is not None and i in node.items]
        else:
            selected = list(node.items.values())
            max_items = request.get("max_items")
            if max_items is not None:
                if not max_items.isdigit():
                    raise StanzaError("bad-request", "modify")
                selected = selected[len(selected) - int(max_items) :] if int(max_items) else []
        result = make(qname(ns.PUBSUB, "pubsub"))
        items = sub(result, qname(ns.PUBSUB, "items"), {"node": node.name})
        for item in selected:
            items.append(copy.deepcopy(item))
        return result

    def _delete(self, owner: JID, delete: Element) -> tuple[Element | None, list[Notification]]:
        node = self._existing(owner, delete)
        del self._nodes[owner][node.name]
        event = make(qname(ns.PUBSUB_EVENT, "event"))
        sub(event, qname(ns.PUBSUB_EVENT, "delete"), {"node": node.name})
        return None, [Notification(owner, node.name, event, node.access_model)]

    def _configure(self, owner: JID, configure: Element, is_set: bool) -> Element | None:
        node = self._existing(owner, configure)
        if is_set:
            form = configure.find(qname(ns.DATA_FORMS, "x"))
            if form is None:
                raise StanzaError("bad-request", "modify")
            if form.get("type") == "submit":
                node.configure(_options(form))
            return None
        result = make(qname(ns.PUBSUB_OWNER, "pubsub"))
        conf = sub(result, qname(ns.PUBSUB_OWNER, "configure"), {"node": node.name})
        conf.append(make_form(NODE_CONFIG, node.config))
        return result
