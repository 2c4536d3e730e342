"""The XML of both OMEMO versions on lxml: device lists, bundles and messages, sans-IO.

These produce and consume the structures of python-omemo and its backends (``DeviceList``,
``oldmemo.oldmemo.BundleImpl`` / ``twomemo.twomemo.BundleImpl``, :class:`omemo.Message` with
the backends' key material and key exchange types), the same ones the backends' ElementTree
codecs (``oldmemo.etree``, ``twomemo.etree``) produce and consume. Those codecs validate with
``xmlschema`` schemas built when they are imported, which costs about half a second of CPU and
14 MiB in every process that uses OMEMO; this module checks the same structure by hand.

Everything here is published or sent by contacts, so every input is bounded and checked before
it reaches the libraries: element names and namespaces, how often each child occurs, no text
where none belongs, numbers in the range of ``xs:unsignedInt`` written in ASCII digits (device
ids from 1), base64 that decodes strictly and to the size each key has, and limits on counts
and lengths (:data:`MAX_DEVICES`, :data:`MAX_PRE_KEYS`, :data:`MAX_KEYS`...). Any violation
is a :class:`MalformedOmemoElement`. Where this module differs from the schemas (on purpose):

* attributes it does not know are ignored (the schemas refuse them);
* a device id listed twice in a device list counts once (the backends' codecs do the same);
* attributes the schemas leave optional but the codecs cannot do without are required:
  ``sid`` of a message header, ``signedPreKeyId`` of a legacy bundle;
* a bundle listing a pre key id or a pre key twice, or a message with two keys for the same
  device, is refused;
* the legacy ``<iv>`` must be 12 or 16 bytes, public keys and signatures their exact sizes.
"""

from __future__ import annotations

import importlib
from typing import Final

import oldmemo.oldmemo as old
import twomemo.twomemo as two
import x3dh
import xeddsa
from jet_trio._xmpp.stanza import E
from lxml import etree
from omemo import DeviceList, EncryptedKeyMaterial, KeyExchange, Message, SignedLabel

from ._xmlbase import (
    _O,
    _T,
    MAX_DEVICES,
    MAX_JID_CHARS,
    MAX_KEY_CHARS,
    MAX_KEYS,
    MAX_PAYLOAD_CHARS,
    MAX_PRE_KEYS,
    OLDMEMO,
    TWOMEMO,
    MalformedOmemoElement,
    _b64text,
    _boolean,
    _count,
    _device_id,
    _elements,
    _expect,
    _leaf,
    _local,
    _once,
    _uint,
    device_entries,
)

__all__ = [
    "MAX_DEVICES",
    "MAX_KEYS",
    "MAX_PRE_KEYS",
    "MalformedOmemoElement",
    "message_sid",
    "parse_bundle",
    "parse_device_list",
    "parse_oldmemo_message",
    "parse_twomemo_message",
    "serialize_bundle",
    "serialize_device_list",
    "serialize_message",
]

# The base class of protobuf's errors: the backends wrap decoding errors into ValueError, but not
# all (twomemo re-serialises the key exchange's inner message: an EncodeError when a field is
# missing). Looked up at run time: protobuf ships no type information.
_PROTOBUF_ERROR: Final[type[Exception]] = importlib.import_module("google.protobuf.message").Error


# -- device lists ------------------------------------------------------------------------------


def parse_device_list(namespace: str, element: etree._Element) -> DeviceList:
    """A device list payload (legacy ``<list>``, OMEMO 2 ``<devices>``) as python-omemo's
    ``DeviceList``: device id to signed label (legacy OMEMO has no labels: ``None``)."""
    devices: DeviceList = {}
    for device_id, text, signature in device_entries(namespace, element):
        label: SignedLabel | None = None
        if text is not None and signature is not None:
            label = SignedLabel(label=text, signature=signature)
        devices[device_id] = label
    return devices


def serialize_device_list(namespace: str, device_list: DeviceList) -> etree._Element:
    """The device list payload of ``namespace`` (labels only in OMEMO 2)."""
    ns = namespace
    children = []
    for device_id, label in device_list.items():
        attrs = {"id": str(device_id)}
        if ns == TWOMEMO and label is not None:
            attrs["label"] = label.label
            attrs["labelsig"] = _b64text(label.signature)
        children.append(E(f"{{{ns}}}device", attrs))
    return E(f"{{{ns}}}list" if ns == OLDMEMO else f"{{{ns}}}devices", None, *children)


# -- bundles -----------------------------------------------------------------------------------


def _pre_keys(prekeys: etree._Element, ns: str, name: str, *, key_size: int) -> dict[bytes, int]:
    ids: dict[bytes, int] = {}
    seen: set[int] = set()
    for pk in _elements(prekeys, ns, frozenset({name})):
        _count(ns, "prekeys", len(ids) + 1, MAX_PRE_KEYS)
        attr = "preKeyId" if ns == OLDMEMO else "id"
        pre_key_id = _uint(pk, ns, attr)
        key = _leaf(pk, ns, max_chars=64, sizes=(key_size,))
        if pre_key_id in seen or key in ids:
            raise MalformedOmemoElement(ns, name, f"pre key {pre_key_id} listed twice")
        seen.add(pre_key_id)
        ids[key] = pre_key_id
    if not ids:
        raise MalformedOmemoElement(ns, "prekeys", "no pre key")
    return ids


def _curve(ns: str, name: str, serialized: bytes) -> bytes:
    """A legacy public key in its network form: 0x05 then 32 bytes."""
    if serialized[0] != 0x05:
        raise MalformedOmemoElement(ns, name, "public key without the 0x05 type byte")
    return serialized[1:]


def parse_bundle(
    namespace: str, element: etree._Element, bare_jid: str, device_id: int
) -> old.BundleImpl | two.BundleImpl:
    """A bundle payload as the backend's ``BundleImpl`` of ``bare_jid``'s ``device_id``."""
    ns = namespace
    _expect(element, ns, "bundle")
    if ns == OLDMEMO:
        parts = _once(
            element, ns, "signedPreKeyPublic", "signedPreKeySignature", "identityKey", "prekeys"
        )
        spk_el = parts["signedPreKeyPublic"]
        spk_id = _uint(spk_el, ns, "signedPreKeyId")
        spk = _curve(ns, "signedPreKeyPublic", _leaf(spk_el, ns, max_chars=64, sizes=(33,)))
        sig = bytearray(_leaf(parts["signedPreKeySignature"], ns, max_chars=128, sizes=(64,)))
        ik = _curve(ns, "identityKey", _leaf(parts["identityKey"], ns, max_chars=64, sizes=(33,)))
        pre_keys = {
            _curve(ns, "preKeyPublic", key): pk_id
            for key, pk_id in _pre_keys(parts["prekeys"], ns, "preKeyPublic", key_size=33).items()
        }
        # Legacy OMEMO publishes the identity key in Curve25519 form; the sign bit of its
        # Ed25519 form travels in the top bit of the signature (as oldmemo's codec does it).
        sign_bit = bool(sig[63] & 0x80)
        sig[63] &= 0x7F
        identity = xeddsa.curve25519_pub_to_ed25519_pub(ik, sign_bit)
        bundle = x3dh.Bundle(identity, spk, bytes(sig), frozenset(pre_keys))
        return old.BundleImpl(bare_jid, device_id, bundle, spk_id, pre_keys)
    parts = _once(element, ns, "spk", "spks", "ik", "prekeys")
    spk_id = _uint(parts["spk"], ns, "id")
    spk = _leaf(parts["spk"], ns, max_chars=64, sizes=(32,))
    signature = _leaf(parts["spks"], ns, max_chars=128, sizes=(64,))
    ik = _leaf(parts["ik"], ns, max_chars=64, sizes=(32,))
    pre_keys = _pre_keys(parts["prekeys"], ns, "pk", key_size=32)
    bundle = x3dh.Bundle(ik, spk, signature, frozenset(pre_keys))
    return two.BundleImpl(bare_jid, device_id, bundle, spk_id, pre_keys)


def serialize_bundle(bundle: old.BundleImpl | two.BundleImpl) -> etree._Element:
    """The bundle payload of ``bundle``'s backend."""
    b = bundle.bundle
    if isinstance(bundle, old.BundleImpl):
        sig = bytearray(b.signed_pre_key_sig)
        sig[63] |= b.identity_key[31] & 0x80
        ser = old.StateImpl.serialize_public_key
        ids = bundle.pre_key_ids
        return E(
            f"{_O}bundle",
            None,
            E(
                f"{_O}signedPreKeyPublic",
                {"signedPreKeyId": str(bundle.signed_pre_key_id)},
                text=_b64text(ser(b.signed_pre_key)),
            ),
            E(f"{_O}signedPreKeySignature", text=_b64text(bytes(sig))),
            E(
                f"{_O}identityKey",
                text=_b64text(ser(xeddsa.ed25519_pub_to_curve25519_pub(b.identity_key))),
            ),
            E(
                f"{_O}prekeys",
                None,
                *(
                    E(f"{_O}preKeyPublic", {"preKeyId": str(ids[k])}, text=_b64text(ser(k)))
                    for k in b.pre_keys
                ),
            ),
        )
    ids = bundle.pre_key_ids
    return E(
        f"{_T}bundle",
        None,
        E(f"{_T}spk", {"id": str(bundle.signed_pre_key_id)}, text=_b64text(b.signed_pre_key)),
        E(f"{_T}spks", text=_b64text(b.signed_pre_key_sig)),
        E(f"{_T}ik", text=_b64text(b.identity_key)),
        E(
            f"{_T}prekeys",
            None,
            *(E(f"{_T}pk", {"id": str(ids[k])}, text=_b64text(k)) for k in b.pre_keys),
        ),
    )


# -- messages ----------------------------------------------------------------------------------

_KeySet = set[tuple[EncryptedKeyMaterial, KeyExchange | None]]


def _key_material(
    ns: str,
    content: bytes,
    kex: bool,
    bare_jid: str,
    rid: int,
    sign_bit: bool,
) -> tuple[EncryptedKeyMaterial, KeyExchange | None]:
    """The backend's structures of one ``<key>``; their parsers' errors become ours."""
    try:
        exchange: KeyExchange | None = None
        if ns == OLDMEMO:
            if kex:
                exchange, content = old.KeyExchangeImpl.parse(content, sign_bit)
            material: EncryptedKeyMaterial = old.EncryptedKeyMaterialImpl.parse(
                content, bare_jid, rid
            )
        else:
            if kex:
                exchange, content = two.KeyExchangeImpl.parse(content)
            material = two.EncryptedKeyMaterialImpl.parse(content, bare_jid, rid)
    except (ValueError, IndexError, _PROTOBUF_ERROR) as exc:
        detail = f" ({exc})" if str(exc) else ""
        raise MalformedOmemoElement(ns, "key", f"not a valid OMEMO key{detail}") from None
    return material, exchange


def message_sid(namespace: str, element: etree._Element) -> int:
    """The sender's device id (``sid``) of an ``<encrypted>`` element, checked."""
    _expect(element, namespace, "encrypted")
    header, _ = _header_and_payload(element, namespace)
    return _device_id(header, namespace, "sid")


def parse_oldmemo_message(
    element: etree._Element, sender_bare_jid: str, own_bare_jid: str, sender_identity_key: bytes
) -> Message:
    """A legacy ``<encrypted>`` as an :class:`omemo.Message` from ``sender_bare_jid``.

    Legacy OMEMO names recipients by device id only: every key is attributed to
    ``own_bare_jid``, as oldmemo's codec does. A pre-key message carries the sender's identity
    key in Curve25519 form; the sign bit of its Ed25519 form is taken from
    ``sender_identity_key`` (the sender device's key, Ed25519, known from its bundle)."""
    ns = OLDMEMO
    _expect(element, ns, "encrypted")
    header, payload = _header_and_payload(element, ns)
    sid = _device_id(header, ns, "sid")
    keys: list[etree._Element] = []
    iv_el: etree._Element | None = None
    for child in _elements(header, ns, frozenset({"key", "iv"})):
        if _local(child) == "iv":
            if iv_el is not None:
                raise MalformedOmemoElement(ns, "header", "<iv> occurs more than once")
            iv_el = child
        else:
            keys.append(child)
            _count(ns, "header", len(keys), MAX_KEYS)
    if iv_el is None:
        raise MalformedOmemoElement(ns, "header", "no <iv>")
    iv = _leaf(iv_el, ns, max_chars=32, sizes=(12, 16))
    sign_bit = bool((sender_identity_key[31] >> 7) & 1)
    found: _KeySet = set()
    rids: set[int] = set()
    for key in keys:
        rid = _device_id(key, ns, "rid")
        if rid in rids:
            raise MalformedOmemoElement(ns, "key", f"two keys for device {rid}")
        rids.add(rid)
        content = _leaf(key, ns, max_chars=MAX_KEY_CHARS)
        prekey = _boolean(key, ns, "prekey")
        found.add(_key_material(ns, content, prekey, own_bare_jid, rid, sign_bit))
    content_impl = (
        old.ContentImpl.make_empty()
        if payload is None
        else old.ContentImpl(_leaf(payload, ns, max_chars=MAX_PAYLOAD_CHARS), iv)
    )
    return Message(ns, sender_bare_jid, sid, content_impl, frozenset(found))


def parse_twomemo_message(element: etree._Element, sender_bare_jid: str) -> Message:
    """An OMEMO 2 ``<encrypted>`` as an :class:`omemo.Message` from ``sender_bare_jid``."""
    ns = TWOMEMO
    _expect(element, ns, "encrypted")
    header, payload = _header_and_payload(element, ns)
    sid = _device_id(header, ns, "sid")
    found: _KeySet = set()
    seen: set[tuple[str, int]] = set()
    for group in _elements(header, ns, frozenset({"keys"})):
        jid = group.get("jid")
        if not jid or len(jid) > MAX_JID_CHARS:
            raise MalformedOmemoElement(ns, "keys", "missing or oversized 'jid' attribute")
        members = 0
        for key in _elements(group, ns, frozenset({"key"})):
            members += 1
            _count(ns, "header", len(seen) + 1, MAX_KEYS)
            rid = _device_id(key, ns, "rid")
            if (jid, rid) in seen:
                raise MalformedOmemoElement(ns, "key", f"two keys for device {rid} of {jid}")
            seen.add((jid, rid))
            content = _leaf(key, ns, max_chars=MAX_KEY_CHARS)
            found.add(_key_material(ns, content, _boolean(key, ns, "kex"), jid, rid, False))
        if not members:
            raise MalformedOmemoElement(ns, "keys", "no <key>")
    if not seen:
        raise MalformedOmemoElement(ns, "header", "no <keys>")
    content_impl = (
        two.ContentImpl.make_empty()
        if payload is None
        else two.ContentImpl(_leaf(payload, ns, max_chars=MAX_PAYLOAD_CHARS))
    )
    return Message(ns, sender_bare_jid, sid, content_impl, frozenset(found))


def _header_and_payload(
    element: etree._Element, ns: str
) -> tuple[etree._Element, etree._Element | None]:
    header: etree._Element | None = None
    payload: etree._Element | None = None
    for child in _elements(element, ns, frozenset({"header", "payload"})):
        local = _local(child)
        if (header if local == "header" else payload) is not None:
            raise MalformedOmemoElement(ns, "encrypted", f"<{local}> occurs more than once")
        if local == "header":
            header = child
        else:
            payload = child
    if header is None:
        raise MalformedOmemoElement(ns, "encrypted", "no <header>")
    return header, payload


def serialize_message(message: Message) -> etree._Element:
    """The ``<encrypted>`` element of ``message`` (its backend's format)."""
    ns = message.namespace
    header = E(f"{{{ns}}}header", {"sid": str(message.device_id)})
    if ns == OLDMEMO:
        content = message.content
        assert isinstance(content, old.ContentImpl)
        for material, exchange in message.keys:
            assert isinstance(material, old.EncryptedKeyMaterialImpl)
            data = material.serialize()
            key = E(f"{_O}key", {"rid": str(material.device_id)})
            if exchange is not None:
                assert isinstance(exchange, old.KeyExchangeImpl)
                data, _sign_bit = exchange.serialize(data)
                key.set("prekey", "true")
            key.text = _b64text(data)
            header.append(key)
        header.append(E(f"{_O}iv", text=_b64text(content.initialization_vector)))
        encrypted = E(f"{_O}encrypted", None, header)
        if not content.empty:
            encrypted.append(E(f"{_O}payload", text=_b64text(content.ciphertext)))
        return encrypted
    if ns != TWOMEMO:
        raise ValueError(f"unknown OMEMO namespace {ns!r}")
    content2 = message.content
    assert isinstance(content2, two.ContentImpl)
    groups: dict[str, etree._Element] = {}
    for material, exchange in message.keys:
        assert isinstance(material, two.EncryptedKeyMaterialImpl)
        group = groups.get(material.bare_jid)
        if group is None:
            group = groups[material.bare_jid] = E(f"{_T}keys", {"jid": material.bare_jid})
            header.append(group)
        data = material.serialize()
        key = E(f"{_T}key", {"rid": str(material.device_id)})
        if exchange is not None:
            assert isinstance(exchange, two.KeyExchangeImpl)
            data = exchange.serialize(data)
            key.set("kex", "true")
        key.text = _b64text(data)
        group.append(key)
    encrypted = E(f"{_T}encrypted", None, header)
    if not content2.empty:
        encrypted.append(E(f"{_T}payload", text=_b64text(content2.ciphertext)))
    return encrypted
