"""The reading rules of the OMEMO XML formats, and device lists, without the OMEMO libraries.

:mod:`._codecs` builds on these for bundles and messages; the device list reader here is what a
process that has not started python-omemo yet uses to check its own published device list (see
:mod:`._prepared`). Importing this module costs no more than lxml and jet-trio do.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from jet_trio import RemoteProtocolError
from lxml import etree

__all__ = [
    "DEVICE_LIST_OPTIONS",
    "MAX_DEVICES",
    "MAX_JID_CHARS",
    "MAX_KEYS",
    "MAX_KEY_CHARS",
    "MAX_LABEL_CHARS",
    "MAX_PAYLOAD_CHARS",
    "MAX_PRE_KEYS",
    "OLDMEMO",
    "TWOMEMO",
    "MalformedOmemoElement",
    "NodeSpec",
    "device_entries",
    "device_ids",
    "node_spec",
]

OLDMEMO: Final = "eu.siacs.conversations.axolotl"
"""Legacy OMEMO's namespace (``oldmemo.oldmemo.NAMESPACE``, checked by the tests)."""
TWOMEMO: Final = "urn:xmpp:omemo:2"
"""OMEMO 2's namespace (``twomemo.twomemo.NAMESPACE``)."""

_O: Final = f"{{{OLDMEMO}}}"
_T: Final = f"{{{TWOMEMO}}}"

MAX_DEVICES: Final = 256
"""Devices in one device list. Every listed device may cost a bundle download when encrypting,
so a contact's list is bounded; deployed accounts have a handful."""
MAX_PRE_KEYS: Final = 1000
"""Pre keys in one bundle (clients publish 100)."""
MAX_KEYS: Final = 512
"""``<key>`` elements in one message header (one per device of the sender and recipients)."""
MAX_KEY_CHARS: Final = 4096
"""Base64 characters of one ``<key>`` (a pre-key message is about 200 bytes)."""
MAX_PAYLOAD_CHARS: Final = 65536
"""Base64 characters of a ``<payload>``."""
MAX_LABEL_CHARS: Final = 256
"""Characters of an OMEMO 2 device label."""
MAX_JID_CHARS: Final = 3071
"""Characters of the ``jid`` of an OMEMO 2 ``<keys>`` (RFC 7622: three parts of 1023 bytes)."""

_UINT: Final = re.compile(r"[0-9]{1,10}")
_XML_SPACE: Final = " \t\r\n"
_UINT_MAX: Final = 2**32 - 1
_BOOLEANS: Final = {"true": True, "1": True, "false": False, "0": False}


class MalformedOmemoElement(RemoteProtocolError):
    """An OMEMO element (device list, bundle, message) that breaks its format or a limit.

    ``namespace`` is the OMEMO version's namespace, ``element`` the local name of the element at
    fault (``device``, ``preKeyPublic``, ``key``...)."""

    def __init__(self, namespace: str, element: str, reason: str) -> None:
        super().__init__(f"malformed OMEMO {_version(namespace)} <{element}>: {reason}")
        self.namespace = namespace
        self.element = element
        self.reason = reason


def _version(namespace: str) -> str:
    return "2" if namespace == TWOMEMO else "0.3 (legacy)"


# -- reading helpers ---------------------------------------------------------------------------


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _expect(el: etree._Element, ns: str, name: str) -> None:
    if not isinstance(el.tag, str) or el.tag != f"{{{ns}}}{name}":
        got = el.tag if isinstance(el.tag, str) else "a non-element node"
        raise MalformedOmemoElement(ns, name, f"expected <{name} xmlns='{ns}'>, got {got}")


def _elements(el: etree._Element, ns: str, allowed: frozenset[str]) -> Iterator[etree._Element]:
    """The child elements of a container element, each in ``ns`` and named in ``allowed``; no
    text may stand between them (the OMEMO formats have no mixed content)."""
    name = _local(el)
    if el.text is not None and el.text.strip(_XML_SPACE):
        raise MalformedOmemoElement(ns, name, "unexpected text")
    for child in el:
        if child.tail is not None and child.tail.strip(_XML_SPACE):
            raise MalformedOmemoElement(ns, name, "unexpected text")
        if not isinstance(child.tag, str):
            continue  # a comment or processing instruction (never built by the stream parser)
        qname = etree.QName(child)
        if qname.namespace != ns or qname.localname not in allowed:
            raise MalformedOmemoElement(ns, name, f"unexpected child <{child.tag}>")
        yield child


def _once(el: etree._Element, ns: str, *names: str) -> dict[str, etree._Element]:
    """Children that must each occur exactly once, in any order (``xs:all``)."""
    found: dict[str, etree._Element] = {}
    for child in _elements(el, ns, frozenset(names)):
        local = _local(child)
        if local in found:
            raise MalformedOmemoElement(ns, _local(el), f"<{local}> occurs more than once")
        found[local] = child
    missing = [n for n in names if n not in found]
    if missing:
        raise MalformedOmemoElement(ns, _local(el), f"no <{missing[0]}>")
    return found


def _uint(el: etree._Element, ns: str, attr: str, *, low: int = 0) -> int:
    """A required ``xs:unsignedInt`` attribute in ASCII digits, at least ``low``."""
    text = el.get(attr)
    name = _local(el)
    if text is None:
        raise MalformedOmemoElement(ns, name, f"no '{attr}' attribute")
    digits = text.strip(_XML_SPACE)
    if not _UINT.fullmatch(digits) or not low <= int(digits) <= _UINT_MAX:
        shown = text if len(text) <= 20 else text[:20] + "..."
        raise MalformedOmemoElement(
            ns, name, f"'{attr}' must be an integer from {low} to {_UINT_MAX}, got {shown!r}"
        )
    return int(digits)


def _device_id(el: etree._Element, ns: str, attr: str) -> int:
    return _uint(el, ns, attr, low=1)


def _boolean(el: etree._Element, ns: str, attr: str) -> bool:
    text = el.get(attr)
    if text is None:
        return False
    value = _BOOLEANS.get(text.strip(_XML_SPACE))
    if value is None:
        raise MalformedOmemoElement(ns, _local(el), f"'{attr}' must be true or false")
    return value


def _b64(
    ns: str, name: str, text: str | None, *, max_chars: int, sizes: tuple[int, ...] = ()
) -> bytes:
    """Strict base64 (``xs:base64Binary``: whitespace allowed between characters)."""
    if text is None or len(text) > 2 * max_chars:
        raise MalformedOmemoElement(ns, name, "empty" if text is None else "too long")
    compact = "".join(text.split())
    if not compact:
        raise MalformedOmemoElement(ns, name, "empty")
    if len(compact) > max_chars:
        raise MalformedOmemoElement(ns, name, f"more than {max_chars} base64 characters")
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedOmemoElement(ns, name, "not valid base64") from None
    if sizes and len(data) not in sizes:
        want = " or ".join(str(s) for s in sizes)
        raise MalformedOmemoElement(ns, name, f"{len(data)} bytes, {want} expected")
    return data


def _leaf(el: etree._Element, ns: str, *, max_chars: int, sizes: tuple[int, ...] = ()) -> bytes:
    """The base64 content of an element that has no children."""
    name = _local(el)
    if len(el):
        raise MalformedOmemoElement(ns, name, "unexpected child")
    return _b64(ns, name, el.text, max_chars=max_chars, sizes=sizes)


def _count(ns: str, name: str, count: int, limit: int) -> None:
    if count > limit:
        raise MalformedOmemoElement(ns, name, f"more than {limit} entries")


def _b64text(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- device lists ------------------------------------------------------------------------------


def device_entries(
    namespace: str, element: etree._Element
) -> Iterator[tuple[int, str | None, bytes | None]]:
    """The devices of a device list payload (legacy ``<list>``, OMEMO 2 ``<devices>``), checked:
    each device id with its label and label signature (OMEMO 2; ``None`` when absent)."""
    ns = namespace
    root = "list" if ns == OLDMEMO else "devices"
    _expect(element, ns, root)
    for count, device in enumerate(_elements(element, ns, frozenset({"device"})), 1):
        _count(ns, root, count, MAX_DEVICES)
        if len(device) or (device.text is not None and device.text.strip(_XML_SPACE)):
            raise MalformedOmemoElement(ns, "device", "unexpected content")
        device_id = _device_id(device, ns, "id")
        text: str | None = None
        signature: bytes | None = None
        if ns == TWOMEMO:
            text, sig = device.get("label"), device.get("labelsig")
            if text is not None and len(text) > MAX_LABEL_CHARS:
                raise MalformedOmemoElement(ns, "device", "label too long")
            if sig is not None:
                signature = _b64(ns, "device", sig, max_chars=128, sizes=(64,))
        yield device_id, text, signature


def device_ids(namespace: str, element: etree._Element) -> frozenset[int]:
    """The device ids of a device list payload (:class:`MalformedOmemoElement` if malformed)."""
    return frozenset(device_id for device_id, _, _ in device_entries(namespace, element))


# -- where the data lives in PEP ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """Where a backend keeps its public data in PEP."""

    device_list_node: str
    bundle_node_prefix: str
    """Legacy OMEMO: one node per device, ``prefix + device id``; OMEMO 2: one node, item per
    device (``bundle_item_per_device``)."""
    bundle_item_per_device: bool

    def bundle_node(self, device_id: int) -> str:
        if self.bundle_item_per_device:
            return self.bundle_node_prefix
        return f"{self.bundle_node_prefix}{device_id}"

    def bundle_item(self, device_id: int) -> str:
        return str(device_id) if self.bundle_item_per_device else "current"

    @property
    def bundle_options(self) -> dict[str, str]:
        """Publish options: open access; OMEMO 2 keeps one item per device, so no item limit."""
        opts = {"pubsub#access_model": "open"}
        if self.bundle_item_per_device:
            opts["pubsub#max_items"] = "max"
        return opts


_NODES: Final = {
    OLDMEMO: NodeSpec(f"{OLDMEMO}.devicelist", f"{OLDMEMO}.bundles:", False),
    TWOMEMO: NodeSpec(f"{TWOMEMO}:devices", f"{TWOMEMO}:bundles", True),
}

DEVICE_LIST_OPTIONS: Final = {"pubsub#access_model": "open"}


def node_spec(namespace: str) -> NodeSpec:
    """The PEP layout of the backend ``namespace`` (``KeyError`` if unknown)."""
    return _NODES[namespace]
