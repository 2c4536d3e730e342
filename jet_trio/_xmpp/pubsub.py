"""PubSub / PEP payloads (XEP-0060, XEP-0163), sans-IO builders and readers."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from lxml import etree

from .._errors import RemoteProtocolError
from . import ns as _ns
from .stanza import E

__all__ = [
    "TEMPORARY_FAILURE_ATTEMPTS",
    "TEMPORARY_FAILURE_PAUSE",
    "PubSubEvent",
    "PubSubItem",
    "PublishRecovery",
    "configure_request",
    "create_request",
    "data_form",
    "is_temporary_failure",
    "items_request",
    "parse_event",
    "parse_items",
    "publish_recovery",
    "publish_request",
    "retract_request",
]

_PS: Final = _ns.PUBSUB
_PUBLISH_OPTIONS_FORM: Final = "http://jabber.org/protocol/pubsub#publish-options"
_NODE_CONFIG_FORM: Final = "http://jabber.org/protocol/pubsub#node_config"


@dataclass(frozen=True, slots=True)
class PubSubItem:
    """An item of a node: its id and payload (``None`` for a retraction or an empty item)."""

    #: The item id (``None`` when the service sent none).
    id: str | None
    #: The item's payload element.
    payload: etree._Element | None


@dataclass(frozen=True, slots=True)
class PubSubEvent:
    """A notification: published items and retracted item ids of one node."""

    #: The node the notification is about.
    node: str
    #: The items published.
    items: tuple[PubSubItem, ...]
    #: The ids of the items retracted.
    retracted: tuple[str, ...]


def data_form(
    form_type: str, fields: Mapping[str, str | Sequence[str]], type_: str = "submit"
) -> etree._Element:
    """A jabber:x:data form with a FORM_TYPE and ``fields``."""
    x = E(f"{{{_ns.DATA_FORMS}}}x", {"type": type_})
    all_fields: dict[str, str | Sequence[str]] = {"FORM_TYPE": form_type, **fields}
    for var, value in all_fields.items():
        f = E(f"{{{_ns.DATA_FORMS}}}field", {"var": var})
        if var == "FORM_TYPE":
            f.set("type", "hidden")
        for v in [value] if isinstance(value, str) else value:
            f.append(E(f"{{{_ns.DATA_FORMS}}}value", text=v))
        x.append(f)
    return x


def publish_request(
    node: str,
    payload: etree._Element,
    item_id: str | None = None,
    options: Mapping[str, str] | None = None,
) -> etree._Element:
    """``<pubsub><publish node><item id>payload</item></publish>[<publish-options>]``."""
    ps = E(f"{{{_PS}}}pubsub")
    pub = E(f"{{{_PS}}}publish", {"node": node})
    item = E(f"{{{_PS}}}item", {"id": item_id})
    item.append(payload)
    pub.append(item)
    ps.append(pub)
    if options:
        po = E(f"{{{_PS}}}publish-options")
        po.append(data_form(_PUBLISH_OPTIONS_FORM, options))
        ps.append(po)
    return ps


def configure_request(node: str, options: Mapping[str, str]) -> etree._Element:
    """Owner node configuration (used when the publish-options were not met or not taken)."""
    ps = E(f"{{{_ns.PUBSUB_OWNER}}}pubsub")
    conf = E(f"{{{_ns.PUBSUB_OWNER}}}configure", {"node": node})
    conf.append(data_form(_NODE_CONFIG_FORM, options))
    ps.append(conf)
    return ps


def create_request(node: str, options: Mapping[str, str]) -> etree._Element:
    """Create ``node`` with a configuration (XEP-0060 8.1.3), for a node that does not exist."""
    ps = E(f"{{{_PS}}}pubsub")
    ps.append(E(f"{{{_PS}}}create", {"node": node}))
    conf = E(f"{{{_PS}}}configure")
    conf.append(data_form(_NODE_CONFIG_FORM, options))
    ps.append(conf)
    return ps


class PublishRecovery(enum.Enum):
    """What to do after a publish with publish-options failed (see :func:`publish_recovery`)."""

    RAISE = "raise"
    """The error is not about the options: report it."""
    CONFIGURE_AND_RETRY = "configure-and-retry"
    """``precondition-not-met``: the node exists with another configuration. Configure it to
    the options, then publish again with the same publish-options (as Conversations does)."""
    CONFIGURE_THEN_PUBLISH_PLAIN = "configure-then-publish-plain"
    """The server refused the publish-options form itself (ejabberd 23.01 knows only
    ``pubsub#access_model`` and ``pubsub#persist_items`` there and answers any other field with
    ``resource-constraint``; XEP-0060 allows ``feature-not-implemented``). Configure the node
    (create it configured if it does not exist), then publish without publish-options. The
    item never lands on a node with a configuration weaker than asked."""
    CREATE_AND_RETRY = "create-and-retry"
    """``item-not-found``: the node does not exist and the server did not create it for the
    publish. ejabberd 23.01 answers so when the node creation it attempts for a publish fails
    (with mnesia, two accounts creating PEP nodes at the same time can deadlock on its node
    index and one creation is aborted). Create the node configured, then publish again once."""


#: Conditions with which servers refuse a publish-options form they cannot take: ejabberd
#: 23.01 says ``resource-constraint`` for an unknown field or a bad value, Prosody
#: ``not-acceptable`` for a bad value, XEP-0060 7.1.5 ``feature-not-implemented`` (no
#: publish-options) and ``bad-request`` (malformed form).
_OPTIONS_REFUSED: Final = frozenset(
    {"resource-constraint", "not-acceptable", "feature-not-implemented", "bad-request"}
)
_PRECONDITION_NOT_MET: Final = f"{{{_ns.PUBSUB_ERRORS}}}precondition-not-met"


def publish_recovery(
    condition: str, app_condition: str | None, with_options: bool
) -> PublishRecovery:
    """The next step after a publish failed with the error ``condition`` / ``app_condition``.

    Without publish-options there is nothing to negotiate. A refusal that is not about the
    options (``forbidden``...) is raised as it is; one that is (and any other error on the
    retry) surfaces from the configuration or the second publish. ``item-not-found`` means
    the node is missing: it is created (configured to the options) and the publish retried.
    """
    if not with_options:
        return PublishRecovery.RAISE
    if app_condition == _PRECONDITION_NOT_MET:
        return PublishRecovery.CONFIGURE_AND_RETRY
    if condition == "item-not-found":
        return PublishRecovery.CREATE_AND_RETRY
    if condition in _OPTIONS_REFUSED:
        return PublishRecovery.CONFIGURE_THEN_PUBLISH_PLAIN
    return PublishRecovery.RAISE


#: How often a PEP request answered with a temporary server failure is sent in all, and the
#: pause before the first resend (doubled, with jitter, for each further one).
TEMPORARY_FAILURE_ATTEMPTS: Final = 3
TEMPORARY_FAILURE_PAUSE: Final = 0.1


def is_temporary_failure(condition: str, error_type: str) -> bool:
    """Whether a PEP request failed for a reason that is worth sending it again shortly.

    Only ``internal-server-error`` of type ``wait`` (RFC 6120 8.3.2: "retry after waiting"):
    ejabberd 23.01 (mnesia) answers so ("Database failure") when a node creation is aborted
    by a deadlock with another account's node creation. Other errors of type ``wait`` are not
    included: ejabberd uses ``resource-constraint`` (``wait``) for publish-options it will
    never take.
    """
    return condition == "internal-server-error" and error_type == "wait"


def items_request(
    node: str, item_ids: Sequence[str] = (), max_items: int | None = None
) -> etree._Element:
    """Retrieve all items, the given ids, or the last ``max_items``."""
    items = E(
        f"{{{_PS}}}items",
        {"node": node, "max_items": None if max_items is None else str(max_items)},
    )
    for i in item_ids:
        items.append(E(f"{{{_PS}}}item", {"id": i}))
    return E(f"{{{_PS}}}pubsub", None, items)


def retract_request(node: str, item_id: str, notify: bool = True) -> etree._Element:
    """Retract one item, notifying subscribers by default."""
    r = E(f"{{{_PS}}}retract", {"node": node, "notify": "true" if notify else None})
    r.append(E(f"{{{_PS}}}item", {"id": item_id}))
    return E(f"{{{_PS}}}pubsub", None, r)


def _payload(item: etree._Element) -> etree._Element | None:
    return next((c for c in item if isinstance(c.tag, str)), None)


def parse_items(pubsub: etree._Element | None, node: str) -> list[PubSubItem]:
    """Items of an items-request result."""
    if pubsub is None:
        return []
    items = pubsub.find(f"{{{_PS}}}items")
    if items is None:
        raise RemoteProtocolError("pubsub items result without <items>")
    if items.get("node") not in (None, node):
        raise RemoteProtocolError(f"asked for node {node!r}, got {items.get('node')!r}")
    return [PubSubItem(i.get("id"), _payload(i)) for i in items.iterfind(f"{{{_PS}}}item")]


def parse_event(message: etree._Element) -> PubSubEvent | None:
    """The PubSub notification in ``message``, or ``None`` if it carries none."""
    ev = message.find(f"{{{_ns.PUBSUB_EVENT}}}event")
    if ev is None:
        return None
    items = ev.find(f"{{{_ns.PUBSUB_EVENT}}}items")
    if items is None or not items.get("node"):
        return None
    published = tuple(
        PubSubItem(i.get("id"), _payload(i)) for i in items.iterfind(f"{{{_ns.PUBSUB_EVENT}}}item")
    )
    retracted = tuple(
        r.get("id", "") for r in items.iterfind(f"{{{_ns.PUBSUB_EVENT}}}retract") if r.get("id")
    )
    return PubSubEvent(items.get("node", ""), published, retracted)
