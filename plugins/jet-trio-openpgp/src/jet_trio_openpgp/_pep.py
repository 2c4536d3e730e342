"""XEP-0373 PEP payloads, sans-IO: the public key data node and the public keys metadata node."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final

from lxml import etree

from ._errors import MalformedEnvelope, NoPublicKey
from ._hooks import NS  # not _signcrypt's: this module must not import pysequoia

__all__ = [
    "PUBLIC_KEYS_NODE",
    "PUBLISH_OPTIONS",
    "KeyMetadata",
    "build_key_list",
    "build_pubkey",
    "key_node",
    "parse_key_list",
    "parse_pubkey",
]

PUBLIC_KEYS_NODE: Final = f"{NS}:public-keys"
"""The metadata node: the list of the account's key fingerprints."""
PUBLISH_OPTIONS: Final = {"pubsub#access_model": "open"}
"""XEP-0373 0.7: both nodes are readable by anyone."""
MAX_KEY_BYTES: Final = 256 * 1024
MAX_KEYS: Final = 32

_PUBKEY: Final = f"{{{NS}}}pubkey"
_DATA: Final = f"{{{NS}}}data"
_LIST: Final = f"{{{NS}}}public-keys-list"
_META: Final = f"{{{NS}}}pubkey-metadata"
_FPR_RE: Final = re.compile(r"[0-9A-F]{40}")


def key_node(fingerprint: str) -> str:
    """The PEP node holding the public key ``fingerprint`` (upper-case hex)."""
    return f"{PUBLIC_KEYS_NODE}:{fingerprint.upper()}"


@dataclass(frozen=True, slots=True)
class KeyMetadata:
    """One ``<pubkey-metadata v4-fingerprint date>`` entry."""

    fingerprint: str
    date: str


def build_pubkey(cert: bytes) -> etree._Element:
    """``<pubkey><data>BASE64(binary public key)</data></pubkey>``."""
    el = etree.Element(_PUBKEY, nsmap={None: NS})  # type: ignore[dict-item]
    etree.SubElement(el, _DATA).text = base64.b64encode(cert).decode("ascii")
    return el


def parse_pubkey(el: etree._Element | None, owner: str) -> bytes:
    """The binary public key of a ``<pubkey>`` item; :class:`NoPublicKey` if unusable."""
    data = None if el is None or el.tag != _PUBKEY else el.find(_DATA)
    if data is None or not data.text:
        raise NoPublicKey(f"{owner} published an OpenPGP key item without <pubkey><data>")
    text = "".join(data.text.split())
    if len(text) > MAX_KEY_BYTES:
        raise NoPublicKey(f"{owner} published an oversized OpenPGP key")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoPublicKey(f"{owner} published an OpenPGP key that is not base64") from None


def build_key_list(keys: list[KeyMetadata]) -> etree._Element:
    """``<public-keys-list>`` with one ``<pubkey-metadata>`` per key."""
    el = etree.Element(_LIST, nsmap={None: NS})  # type: ignore[dict-item]
    for k in keys:
        etree.SubElement(el, _META, {"v4-fingerprint": k.fingerprint.upper(), "date": k.date})
    return el


def parse_key_list(el: etree._Element | None) -> list[KeyMetadata]:
    """Entries of a ``<public-keys-list>``; malformed entries are skipped, duplicates dropped."""
    if el is None or el.tag != _LIST:
        raise MalformedEnvelope("expected a <public-keys-list> item")
    out: dict[str, KeyMetadata] = {}
    for meta in el.iterfind(_META):
        fpr = meta.get("v4-fingerprint", "").upper()
        if _FPR_RE.fullmatch(fpr) and fpr not in out:
            out[fpr] = KeyMetadata(fpr, meta.get("date", ""))
        if len(out) >= MAX_KEYS:
            break
    return list(out.values())
