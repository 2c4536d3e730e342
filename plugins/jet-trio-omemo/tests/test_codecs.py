"""The plugin's own OMEMO codecs (device lists, bundles, messages) against the backends' ElementTree
codecs (``oldmemo.etree`` / ``twomemo.etree``, imported here only, never at run time), the XEP's
examples, what Dino sends, and hostile input."""

from __future__ import annotations

import base64
import random
import secrets
from pathlib import Path
from typing import Any

import oldmemo.etree
import oldmemo.oldmemo as old
import oldmemo.oldmemo_pb2 as old_pb2
import pytest
import twomemo.etree
import twomemo.twomemo as two
import twomemo.twomemo_pb2 as two_pb2
import x3dh
import xeddsa
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from omemo import DeviceInformation, DeviceList, Message, SignedLabel

from jet_trio_omemo import _codecs
from jet_trio_omemo._backends import OLDMEMO, TWOMEMO, et_to_lxml, lxml_to_et
from jet_trio_omemo._codecs import MalformedOmemoElement

BOTH = pytest.mark.parametrize("ns", [OLDMEMO, TWOMEMO], ids=["oldmemo", "twomemo"])
CAPTURE = (
    Path(__file__).resolve().parents[3]
    / "tests"
    / "fixtures"
    / "dino"
    / "dino2dino_jet_omemo_s5b.xml"
)
JET = "urn:xmpp:jingle:jet:0"
P5 = b"\x05"  # the type byte of a legacy public key


def xml(text: str) -> etree._Element:
    return etree.fromstring(text.encode(), etree.XMLParser(resolve_entities=False, no_network=True))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def shape(el: etree._Element) -> tuple[Any, ...]:
    """An element's names, attributes, text and children, whatever its prefixes and the order of
    its children (pre keys come from a set)."""
    text = (el.text or "").strip()
    return (el.tag, sorted(el.attrib.items()), text, sorted(shape(c) for c in el))


def curve() -> bytes:
    return xeddsa.priv_to_curve25519_pub(secrets.token_bytes(32))


def ed(sign: bool | None = None) -> bytes:
    priv = secrets.token_bytes(32)
    if sign is not None:
        priv = xeddsa.priv_force_sign(priv, sign)
    return xeddsa.priv_to_ed25519_pub(priv)


# -- structures made the way the backends make them ---------------------------------------------


def make_bundle(ns: str, *, sign: bool = False, pre_keys: int = 5) -> Any:
    keys = {curve(): i + 1 for i in range(pre_keys)}
    bundle = x3dh.Bundle(ed(sign), curve(), secrets.token_bytes(64), frozenset(keys))
    if ns == OLDMEMO:
        # The legacy wire format carries the Ed25519 sign bit in the signature's top bit.
        sig = bytearray(bundle.signed_pre_key_sig)
        sig[63] &= 0x7F
        bundle = bundle._replace(signed_pre_key_sig=bytes(sig))
        return old.BundleImpl("bob@example.org", 4223, bundle, 7, keys)
    return two.BundleImpl("bob@example.org", 4223, bundle, 7, keys)


def authenticated(ns: str) -> bytes:
    """A serialized OMEMOAuthenticatedMessage of the backend (random content, right shape)."""
    if ns == OLDMEMO:
        inner = old_pb2.OMEMOMessage(
            n=3, pn=1, dh_pub=b"\x05" + curve(), ciphertext=secrets.token_bytes(32)
        ).SerializeToString()
        return b"\x33" + bytes(inner) + secrets.token_bytes(8)
    inner = two_pb2.OMEMOMessage(
        n=3, pn=1, dh_pub=curve(), ciphertext=secrets.token_bytes(48)
    ).SerializeToString()
    return bytes(
        two_pb2.OMEMOAuthenticatedMessage(
            mac=secrets.token_bytes(16), message=inner
        ).SerializeToString()
    )


def key_exchange(ns: str, message: bytes, identity: bytes) -> bytes:
    if ns == OLDMEMO:
        ik = b"\x05" + xeddsa.ed25519_pub_to_curve25519_pub(identity)
        return bytes(
            b"\x33"
            + old_pb2.OMEMOKeyExchange(
                pk_id=17, spk_id=2, ik=ik, ek=b"\x05" + curve(), message=message
            ).SerializeToString()
        )
    return bytes(
        two_pb2.OMEMOKeyExchange(
            pk_id=17,
            spk_id=2,
            ik=identity,
            ek=curve(),
            message=two_pb2.OMEMOAuthenticatedMessage.FromString(message),
        ).SerializeToString()
    )


def make_message_xml(
    ns: str, identity: bytes, *, payload: bool = False, keys: int = 3
) -> etree._Element:
    """An ``<encrypted>`` as a client sends it: ``keys`` keys, the first a pre-key message."""
    header = etree.Element(f"{{{ns}}}header", sid="27183", nsmap={None: ns})  # type: ignore[dict-item]
    parent = header
    if ns == TWOMEMO:
        parent = etree.SubElement(header, f"{{{ns}}}keys", jid="juliet@capulet.lit")
    for i in range(keys):
        data = authenticated(ns)
        key = etree.SubElement(parent, f"{{{ns}}}key", rid=str(31415 + i))
        if i == 0:
            data = key_exchange(ns, data, identity)
            key.set("prekey" if ns == OLDMEMO else "kex", "true")
        key.text = b64(data)
    if ns == OLDMEMO:
        etree.SubElement(header, f"{{{ns}}}iv").text = b64(secrets.token_bytes(12))
    encrypted = etree.Element(f"{{{ns}}}encrypted", nsmap={None: ns})  # type: ignore[dict-item]
    encrypted.append(header)
    if payload:
        etree.SubElement(encrypted, f"{{{ns}}}payload").text = b64(secrets.token_bytes(40))
    return encrypted


class Devices:
    """What oldmemo's codec asks the session manager: the sender's devices (for the sign bit)."""

    def __init__(self, identity: bytes, device_id: int = 27183) -> None:
        self.info = DeviceInformation(
            namespaces=frozenset({OLDMEMO}),
            active=frozenset({(OLDMEMO, True)}),
            bare_jid="romeo@montague.lit",
            device_id=device_id,
            identity_key=identity,
            trust_level_name="undecided",
            label=None,
        )

    async def get_device_information(self, bare_jid: str) -> frozenset[DeviceInformation]:
        return frozenset({self.info})


def norm(message: Message) -> tuple[Any, ...]:
    """A message's content as comparable values (the key structures have no equality)."""
    keys = set()
    for material, exchange in message.keys:
        kex = None
        if exchange is not None:
            kex = (exchange.header, exchange.signed_pre_key_id, exchange.pre_key_id)  # type: ignore[attr-defined]
        keys.add((material.bare_jid, material.device_id, material.encrypted_message, kex))  # type: ignore[attr-defined]
    content = message.content
    # An empty content's IV is random (oldmemo's make_empty): only a payload's IV is compared.
    iv = None if content.empty else getattr(content, "initialization_vector", None)
    return (
        message.namespace,
        message.bare_jid,
        message.device_id,
        (content.empty, content.ciphertext if not content.empty else b"", iv),  # type: ignore[attr-defined]
        frozenset(keys),
    )


async def library_parse(ns: str, element: etree._Element, identity: bytes) -> Message:
    if ns == OLDMEMO:
        return await oldmemo.etree.parse_message(
            lxml_to_et(element),
            "romeo@montague.lit",
            "juliet@capulet.lit",
            Devices(identity, int(element.find(f"{{{ns}}}header").get("sid"))),  # type: ignore[arg-type, union-attr]
        )
    return twomemo.etree.parse_message(lxml_to_et(element), "romeo@montague.lit")


def ours_parse(ns: str, element: etree._Element, identity: bytes) -> Message:
    if ns == OLDMEMO:
        return _codecs.parse_oldmemo_message(
            element, "romeo@montague.lit", "juliet@capulet.lit", identity
        )
    return _codecs.parse_twomemo_message(element, "romeo@montague.lit")


# -- round trips with the libraries' own codecs --------------------------------------------------


def device_list(ns: str) -> DeviceList:
    devices: DeviceList = {1: None, 12345: None, 2**32 - 1: None, 2**31 - 1: None}
    if ns == TWOMEMO:
        devices[4223] = SignedLabel("Gajim on Ubuntu Linux", secrets.token_bytes(64))
    return devices


@BOTH
def test_device_list_round_trips_with_the_library(ns: str) -> None:
    devices = device_list(ns)
    ours = _codecs.serialize_device_list(ns, devices)
    lib_mod = oldmemo.etree if ns == OLDMEMO else twomemo.etree
    assert lib_mod.parse_device_list(lxml_to_et(ours)) == devices
    theirs = et_to_lxml(lib_mod.serialize_device_list(devices))
    assert _codecs.parse_device_list(ns, theirs) == devices
    assert _codecs.parse_device_list(ns, ours) == devices
    assert shape(ours) == shape(theirs)


@BOTH
@pytest.mark.parametrize("sign", [False, True])
def test_bundle_round_trips_with_the_library(ns: str, sign: bool) -> None:
    bundle = make_bundle(ns, sign=sign, pre_keys=100)
    ours = _codecs.serialize_bundle(bundle)
    if ns == OLDMEMO:
        assert oldmemo.etree.parse_bundle(lxml_to_et(ours), "bob@example.org", 4223) == bundle
        theirs = et_to_lxml(oldmemo.etree.serialize_bundle(bundle))
    else:
        assert twomemo.etree.parse_bundle(lxml_to_et(ours), "bob@example.org", 4223) == bundle
        theirs = et_to_lxml(twomemo.etree.serialize_bundle(bundle))
    assert _codecs.parse_bundle(ns, theirs, "bob@example.org", 4223) == bundle
    assert _codecs.parse_bundle(ns, ours, "bob@example.org", 4223) == bundle
    assert shape(ours) == shape(theirs)


@BOTH
@pytest.mark.parametrize("payload", [False, True], ids=["key-transport", "payload"])
@pytest.mark.parametrize("sign", [False, True])
async def test_message_round_trips_with_the_library(ns: str, payload: bool, sign: bool) -> None:
    identity = ed(sign)
    element = make_message_xml(ns, identity, payload=payload)
    theirs = await library_parse(ns, element, identity)
    ours = ours_parse(ns, element, identity)
    assert norm(ours) == norm(theirs)
    # Each side reads what the other writes.
    lib_mod: Any = oldmemo.etree if ns == OLDMEMO else twomemo.etree
    from_lib = et_to_lxml(lib_mod.serialize_message(theirs))
    assert norm(ours_parse(ns, from_lib, identity)) == norm(theirs)
    from_ours = _codecs.serialize_message(ours)
    assert norm(await library_parse(ns, from_ours, identity)) == norm(theirs)
    assert (from_ours.find(f"{{{ns}}}payload") is not None) == payload


def test_sign_bit_of_a_pre_key_message_comes_from_the_known_identity() -> None:
    identity = ed(True)
    element = make_message_xml(OLDMEMO, identity, keys=1)
    (material, exchange), *_ = ours_parse(OLDMEMO, element, identity).keys
    assert exchange is not None
    assert exchange.header.identity_key == identity  # type: ignore[attr-defined]
    assert material.bare_jid == "juliet@capulet.lit"  # legacy OMEMO: matched by device id only


# -- what Dino sends -----------------------------------------------------------------------------


def dino_encrypted() -> etree._Element:
    iq = xml(CAPTURE.read_text(encoding="utf-8").splitlines()[0])
    encrypted = iq.find(f".//{{{JET}}}security/{{{OLDMEMO}}}encrypted")
    assert encrypted is not None
    return encrypted


async def test_dino_key_transport_reads_as_the_library_reads_it() -> None:
    encrypted = dino_encrypted()
    # Dino's identity key is unknown here: either sign is what its bundle would say.
    for identity in (ed(False), ed(True)):
        ours = ours_parse(OLDMEMO, encrypted, identity)
        assert norm(ours) == norm(await library_parse(OLDMEMO, encrypted, identity))
        assert ours.device_id == 64371059
        assert ours.content.empty
        ((material, exchange),) = ours.keys
        assert material.device_id == 980639778 and exchange is not None
        # Written back as the library writes it (both re-encode the key exchange's protobuf;
        # the <iv> of an empty content is a fresh random one on both sides).
        theirs = await library_parse(OLDMEMO, encrypted, identity)
        path = f"{OL}header/{OL}key"
        assert [shape(k) for k in _codecs.serialize_message(ours).iterfind(path)] == [
            shape(k) for k in et_to_lxml(oldmemo.etree.serialize_message(theirs)).iterfind(path)
        ]


def test_dino_device_list_notification_form() -> None:
    """Dino 0.4 publishes its legacy device list as ``<list><device id=.../></list>`` (and its
    bundle item id is "1", handled by the download, not the codec)."""
    devices = xml(f"<list xmlns='{OLDMEMO}'><device id='64371059'/><device id='980639778'/></list>")
    assert _codecs.parse_device_list(OLDMEMO, devices) == {64371059: None, 980639778: None}


PEP_CAPTURE = Path(__file__).resolve().parent / "fixtures" / "dino_omemo_pep.xml"
PUBSUB = "http://jabber.org/protocol/pubsub"


def dino_pep(node_prefix: str) -> etree._Element:
    """The payload Dino 0.4.2 published to a legacy OMEMO node (captured on loopback: Prosody's
    log of the Dino interop lab, tests/interop)."""
    for line in PEP_CAPTURE.read_text(encoding="utf-8").splitlines():
        iq = xml(line)
        publish = iq.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish")
        assert publish is not None
        if publish.get("node", "").startswith(node_prefix):
            return publish[0][0]
    raise AssertionError(node_prefix)


def test_dino_device_list_as_published() -> None:
    element = dino_pep(f"{OLDMEMO}.devicelist")
    assert _codecs.parse_device_list(OLDMEMO, element) == {624571178: None}
    assert oldmemo.etree.parse_device_list(lxml_to_et(element)) == {624571178: None}


def test_dino_bundle_as_published() -> None:
    element = dino_pep(f"{OLDMEMO}.bundles:")
    ours = _codecs.parse_bundle(OLDMEMO, element, "alice@localhost", 624571178)
    assert ours == oldmemo.etree.parse_bundle(lxml_to_et(element), "alice@localhost", 624571178)
    assert len(ours.pre_key_ids) == 100
    assert ours.signed_pre_key_id == 1157253384
    # Written back, it is Dino's bundle (element for element, pre keys in any order).
    again = _codecs.serialize_bundle(ours)
    assert shape(again) == shape(element)
    assert _codecs.parse_bundle(OLDMEMO, again, "alice@localhost", 624571178) == ours


# -- the XEP's examples (XEP-0384 0.3 for legacy OMEMO, 0.8/0.9 for OMEMO 2) ---------------------


def test_xep_legacy_examples() -> None:
    devices = xml(
        f"""<list xmlns='{OLDMEMO}'>
              <device id='12345' />
              <device id='4223' />
              <device id='31415' />
            </list>"""
    )
    assert _codecs.parse_device_list(OLDMEMO, devices) == {12345: None, 4223: None, 31415: None}
    pre = [curve() for _ in range(3)]
    identity = ed()
    bundle = xml(
        f"""<bundle xmlns='{OLDMEMO}'>
              <signedPreKeyPublic signedPreKeyId='1'>{b64(P5 + curve())}</signedPreKeyPublic>
              <signedPreKeySignature>{b64(secrets.token_bytes(64))}</signedPreKeySignature>
              <identityKey>{b64(P5 + xeddsa.ed25519_pub_to_curve25519_pub(identity))}</identityKey>
              <prekeys>
                <preKeyPublic preKeyId='1'>{b64(P5 + pre[0])}</preKeyPublic>
                <preKeyPublic preKeyId='2'>{b64(P5 + pre[1])}</preKeyPublic>
                <preKeyPublic preKeyId='3'>{b64(P5 + pre[2])}</preKeyPublic>
              </prekeys>
            </bundle>"""
    )
    parsed = _codecs.parse_bundle(OLDMEMO, bundle, "juliet@capulet.lit", 31415)
    assert parsed == oldmemo.etree.parse_bundle(lxml_to_et(bundle), "juliet@capulet.lit", 31415)
    assert parsed.pre_key_ids == {pre[0]: 1, pre[1]: 2, pre[2]: 3}


async def test_xep_legacy_message_example() -> None:
    identity = ed()
    message = xml(
        f"""<encrypted xmlns='{OLDMEMO}'>
              <header sid='27183'>
                <key rid='31415'>{b64(authenticated(OLDMEMO))}</key>
                <key rid='12321'>{b64(authenticated(OLDMEMO))}</key>
                <iv>{b64(secrets.token_bytes(12))}</iv>
              </header>
              <payload>{b64(secrets.token_bytes(30))}</payload>
            </encrypted>"""
    )
    ours = ours_parse(OLDMEMO, message, identity)
    assert norm(ours) == norm(await library_parse(OLDMEMO, message, identity))
    assert {m.device_id for m, _ in ours.keys} == {31415, 12321}


def test_xep_omemo2_device_list_examples() -> None:
    example = xml(
        f"""<devices xmlns='{TWOMEMO}'>
              <device id='12345' />
              <device id='4223' label='Gajim on Ubuntu Linux' />
            </devices>"""
    )
    expected = {12345: None, 4223: None}  # a label without its signature is not used
    assert _codecs.parse_device_list(TWOMEMO, example) == expected
    assert twomemo.etree.parse_device_list(lxml_to_et(example)) == expected
    # XEP-0384 0.9 adds an 'updated' attribute: read (ignored) where the library's schema refuses.
    newer = xml(
        f"""<devices xmlns='{TWOMEMO}'>
              <device id='12345' />
              <device id='4223' label='Gajim on Ubuntu Linux' updated='2024-07-10T23:08:25Z'/>
            </devices>"""
    )
    assert _codecs.parse_device_list(TWOMEMO, newer) == expected
    with pytest.raises(Exception, match="updated"):
        twomemo.etree.parse_device_list(lxml_to_et(newer))


async def test_xep_omemo2_bundle_and_message_examples() -> None:
    identity = ed()
    pre = [curve() for _ in range(3)]
    bundle = xml(
        f"""<bundle xmlns='{TWOMEMO}'>
              <spk id='0'>{b64(curve())}</spk>
              <spks>{b64(secrets.token_bytes(64))}</spks>
              <ik>{b64(identity)}</ik>
              <prekeys>
                <pk id='0'>{b64(pre[0])}</pk>
                <pk id='1'>{b64(pre[1])}</pk>
                <pk id='2'>{b64(pre[2])}</pk>
              </prekeys>
            </bundle>"""
    )
    parsed = _codecs.parse_bundle(TWOMEMO, bundle, "juliet@capulet.lit", 31415)
    assert parsed == twomemo.etree.parse_bundle(lxml_to_et(bundle), "juliet@capulet.lit", 31415)
    kex = key_exchange(TWOMEMO, authenticated(TWOMEMO), identity)
    message = xml(
        f"""<encrypted xmlns='{TWOMEMO}'>
              <header sid='27183'>
                <keys jid='juliet@capulet.lit'>
                  <key rid='31415'>{b64(authenticated(TWOMEMO))}</key>
                </keys>
                <keys jid='romeo@montague.lit'>
                  <key rid='1337'>{b64(authenticated(TWOMEMO))}</key>
                  <key kex='true' rid='12321'>{b64(kex)}</key>
                </keys>
              </header>
              <payload>{b64(secrets.token_bytes(30))}</payload>
            </encrypted>"""
    )
    ours = ours_parse(TWOMEMO, message, identity)
    assert norm(ours) == norm(await library_parse(TWOMEMO, message, identity))
    assert {(m.bare_jid, m.device_id) for m, _ in ours.keys} == {
        ("juliet@capulet.lit", 31415),
        ("romeo@montague.lit", 1337),
        ("romeo@montague.lit", 12321),
    }


# -- hostile input: device lists -----------------------------------------------------------------


def devices_xml(ns: str, inner: str) -> etree._Element:
    root = "list" if ns == OLDMEMO else "devices"
    return xml(f"<{root} xmlns='{ns}'>{inner}</{root}>")


@BOTH
def test_device_list_limit(ns: str) -> None:
    many = "".join(f"<device id='{i}'/>" for i in range(1, _codecs.MAX_DEVICES + 1))
    assert len(_codecs.parse_device_list(ns, devices_xml(ns, many))) == _codecs.MAX_DEVICES
    more = many + f"<device id='{_codecs.MAX_DEVICES + 1}'/>"
    with pytest.raises(MalformedOmemoElement, match="more than 256"):
        _codecs.parse_device_list(ns, devices_xml(ns, more))


@BOTH
def test_huge_device_list_is_refused_quickly(ns: str) -> None:
    huge = "".join(f"<device id='{i}'/>" for i in range(1, 50_001))
    with pytest.raises(MalformedOmemoElement):
        _codecs.parse_device_list(ns, devices_xml(ns, huge))


@BOTH
@pytest.mark.parametrize(
    ("inner", "match"),
    [
        ("<device/>", "no 'id'"),
        ("<device id=''/>", "'id' must be"),
        ("<device id='0'/>", "'id' must be"),
        ("<device id='-1'/>", "'id' must be"),
        ("<device id='+5'/>", "'id' must be"),
        ("<device id='4294967296'/>", "'id' must be"),
        ("<device id='99999999999999999999999'/>", "'id' must be"),
        ("<device id='0x10'/>", "'id' must be"),
        ("<device id='1e3'/>", "'id' must be"),
        ("<device id='\u00b2'/>", "'id' must be"),  # superscript two: str.isdigit() says yes
        ("<device id='\uff11\uff12'/>", "'id' must be"),  # fullwidth digits: int() accepts them
        ("<device id='12'>text</device>", "unexpected content"),
        ("<device id='12'><device id='13'/></device>", "unexpected content"),
        ("<other id='12'/>", "unexpected child"),
        ("<device xmlns='urn:example' id='12'/>", "unexpected child"),
        ("stray text<device id='12'/>", "unexpected text"),
        ("<device id='12'/>tail", "unexpected text"),
    ],
)
def test_malformed_device_lists(ns: str, inner: str, match: str) -> None:
    with pytest.raises(MalformedOmemoElement, match=match):
        _codecs.parse_device_list(ns, devices_xml(ns, inner))


@BOTH
def test_device_list_of_the_wrong_namespace_or_element(ns: str) -> None:
    other = TWOMEMO if ns == OLDMEMO else OLDMEMO
    with pytest.raises(MalformedOmemoElement, match="expected <"):
        _codecs.parse_device_list(ns, devices_xml(other, "<device id='1'/>"))
    with pytest.raises(MalformedOmemoElement, match="expected <"):
        _codecs.parse_device_list(ns, xml(f"<bundle xmlns='{ns}'/>"))


@BOTH
def test_device_list_whitespace_and_duplicates(ns: str) -> None:
    """``xs:unsignedInt`` collapses whitespace; a device listed twice counts once."""
    parsed = _codecs.parse_device_list(
        ns, devices_xml(ns, "\n  <device id=' 12 '/>\n  <device id='12'/><device id='007'/>\n")
    )
    assert parsed == {12: None, 7: None}


@pytest.mark.parametrize(
    ("attrs", "match"),
    [
        ("label='x' labelsig='!!!!'", "not valid base64"),
        ("label='x' labelsig='AAAA'", "3 bytes, 64 expected"),
        (f"label='{'x' * 300}' labelsig='{b64(bytes(64))}'", "label too long"),
    ],
)
def test_malformed_omemo2_labels(attrs: str, match: str) -> None:
    with pytest.raises(MalformedOmemoElement, match=match):
        _codecs.parse_device_list(TWOMEMO, devices_xml(TWOMEMO, f"<device id='1' {attrs}/>"))


# -- hostile input: bundles ----------------------------------------------------------------------


def bundle_text(ns: str, **changes: str) -> str:
    text = etree.tostring(_codecs.serialize_bundle(make_bundle(ns, pre_keys=3))).decode()
    for old_text, new_text in changes.items():
        text = text.replace(old_text, new_text)
    return text


def mutate(
    element: etree._Element, path: str, *, text: str | None = None, **attrs: str | None
) -> etree._Element:
    target = element.find(path)
    assert target is not None, path
    if text is not None:
        target.text = text
    for name, value in attrs.items():
        if value is None:
            del target.attrib[name]
        else:
            target.set(name, value)
    return element


OL, TW = f"{{{OLDMEMO}}}", f"{{{TWOMEMO}}}"


def old_bundle() -> etree._Element:
    return _codecs.serialize_bundle(make_bundle(OLDMEMO, pre_keys=3))


def two_bundle() -> etree._Element:
    return _codecs.serialize_bundle(make_bundle(TWOMEMO, pre_keys=3))


def same_ids(element: etree._Element, path: str, attr: str) -> etree._Element:
    for target in element.iterfind(path):
        target.set(attr, "9")
    return element


def _drop(element: etree._Element, path: str) -> etree._Element:
    target = element.find(path)
    assert target is not None
    target.getparent().remove(target)  # type: ignore[union-attr]
    return element


def _dup(element: etree._Element, path: str) -> etree._Element:
    target = element.find(path)
    assert target is not None
    target.getparent().append(etree.fromstring(etree.tostring(target)))  # type: ignore[union-attr]
    return element


BAD_BUNDLES = [
    (
        "old: no identity key",
        OLDMEMO,
        lambda: _drop(old_bundle(), f"{OL}identityKey"),
        "no <identityKey>",
    ),
    (
        "old: two identity keys",
        OLDMEMO,
        lambda: _dup(old_bundle(), f"{OL}identityKey"),
        "more than once",
    ),
    (
        "old: no spk id",
        OLDMEMO,
        lambda: mutate(old_bundle(), f"{OL}signedPreKeyPublic", signedPreKeyId=None),
        "no 'signedPreKeyId'",
    ),
    (
        "old: spk id range",
        OLDMEMO,
        lambda: mutate(old_bundle(), f"{OL}signedPreKeyPublic", signedPreKeyId="4294967296"),
        "must be an integer",
    ),
    (
        "old: key without type byte",
        OLDMEMO,
        lambda: mutate(old_bundle(), f"{OL}identityKey", text=b64(b"\x06" + bytes(32))),
        "0x05",
    ),
    (
        "old: short identity key",
        OLDMEMO,
        lambda: mutate(old_bundle(), f"{OL}identityKey", text=b64(P5 + bytes(31))),
        "32 bytes, 33 expected",
    ),
    (
        "old: short signature",
        OLDMEMO,
        lambda: mutate(old_bundle(), f"{OL}signedPreKeySignature", text=b64(bytes(63))),
        "63 bytes, 64 expected",
    ),
    (
        "old: bad base64",
        OLDMEMO,
        lambda: mutate(old_bundle(), f"{OL}signedPreKeyPublic", text="BQ==BQ=="),
        "not valid base64",
    ),
    ("old: empty key", OLDMEMO, lambda: mutate(old_bundle(), f"{OL}identityKey", text=""), "empty"),
    (
        "old: pre key id missing",
        OLDMEMO,
        lambda: mutate(old_bundle(), f"{OL}prekeys/{OL}preKeyPublic", preKeyId=None),
        "no 'preKeyId'",
    ),
    (
        "old: pre key id twice",
        OLDMEMO,
        lambda: same_ids(old_bundle(), f"{OL}prekeys/{OL}preKeyPublic", "preKeyId"),
        "listed twice",
    ),
    (
        "old: pre key twice",
        OLDMEMO,
        lambda: _dup(old_bundle(), f"{OL}prekeys/{OL}preKeyPublic"),
        "listed twice",
    ),
    (
        "old: no pre keys",
        OLDMEMO,
        lambda: xml(bundle_text(OLDMEMO).split("<prekeys>")[0] + "<prekeys/></bundle>"),
        "no pre key",
    ),
    (
        "old: unknown child",
        OLDMEMO,
        lambda: xml(bundle_text(OLDMEMO, **{"</bundle>": "<extra/></bundle>"})),
        "unexpected child",
    ),
    (
        "old: OMEMO 2 children",
        OLDMEMO,
        lambda: xml(bundle_text(TWOMEMO).replace(TWOMEMO, OLDMEMO)),
        "unexpected child",
    ),
    ("two: no ik", TWOMEMO, lambda: _drop(two_bundle(), f"{TW}ik"), "no <ik>"),
    ("two: two spks", TWOMEMO, lambda: _dup(two_bundle(), f"{TW}spks"), "more than once"),
    (
        "two: ik 33 bytes",
        TWOMEMO,
        lambda: mutate(two_bundle(), f"{TW}ik", text=b64(bytes(33))),
        "33 bytes, 32 expected",
    ),
    (
        "two: pk not base64",
        TWOMEMO,
        lambda: mutate(two_bundle(), f"{TW}prekeys/{TW}pk", text="%%%%"),
        "not valid base64",
    ),
    (
        "two: pk id negative",
        TWOMEMO,
        lambda: mutate(two_bundle(), f"{TW}prekeys/{TW}pk", id="-3"),
        "must be an integer",
    ),
    (
        "two: child inside a key",
        TWOMEMO,
        lambda: xml(bundle_text(TWOMEMO, **{"</ik>": "<x/></ik>"})),
        "unexpected child",
    ),
    ("two: legacy root", TWOMEMO, lambda: old_bundle(), "expected <bundle"),
]


@pytest.mark.parametrize(
    ("name", "ns", "make", "match"), BAD_BUNDLES, ids=[b[0] for b in BAD_BUNDLES]
)
def test_malformed_bundles(name: str, ns: str, make: Any, match: str) -> None:
    with pytest.raises(MalformedOmemoElement, match=match):
        _codecs.parse_bundle(ns, make(), "bob@example.org", 1)


@BOTH
def test_pre_key_limit(ns: str) -> None:
    bundle = _codecs.serialize_bundle(make_bundle(ns, pre_keys=_codecs.MAX_PRE_KEYS))
    assert len(_codecs.parse_bundle(ns, bundle, "b@x", 1).pre_key_ids) == _codecs.MAX_PRE_KEYS
    bundle = _codecs.serialize_bundle(make_bundle(ns, pre_keys=_codecs.MAX_PRE_KEYS + 1))
    with pytest.raises(MalformedOmemoElement, match="more than 1000"):
        _codecs.parse_bundle(ns, bundle, "b@x", 1)


@BOTH
def test_base64_with_line_breaks_is_read(ns: str) -> None:
    """``xs:base64Binary`` allows whitespace (some clients wrap at 76 characters)."""
    bundle = make_bundle(ns)
    element = _codecs.serialize_bundle(bundle)
    for el in element.iter():
        if el.text and len(el) == 0:
            el.text = "\n" + "\n ".join(el.text[i : i + 10] for i in range(0, len(el.text), 10))
    assert _codecs.parse_bundle(ns, element, "bob@example.org", 4223) == bundle


# -- hostile input: messages ---------------------------------------------------------------------


def message(ns: str, identity: bytes, **kw: Any) -> etree._Element:
    return make_message_xml(ns, identity, **kw)


def parse_any(ns: str, element: etree._Element, identity: bytes) -> Message:
    return ours_parse(ns, element, identity)


def _key_path(ns: str) -> str:
    if ns == OLDMEMO:
        return f"{OL}header/{OL}key"
    return f"{TW}header/{TW}keys/{TW}key"


BAD_MESSAGES: list[tuple[str, str, Any, str]] = [
    ("no header", "*", lambda ns, e: _drop(e, f"{{{ns}}}header"), "no <header>"),
    ("two headers", "*", lambda ns, e: _dup(e, f"{{{ns}}}header"), "more than once"),
    ("two payloads", "*", lambda ns, e: _dup(e, f"{{{ns}}}payload"), "more than once"),
    ("no sid", "*", lambda ns, e: mutate(e, f"{{{ns}}}header", sid=None), "no 'sid'"),
    ("sid 0", "*", lambda ns, e: mutate(e, f"{{{ns}}}header", sid="0"), "'sid' must be"),
    ("key without rid", "*", lambda ns, e: mutate(e, _key_path(ns), rid=None), "no 'rid'"),
    ("rid not a number", "*", lambda ns, e: mutate(e, _key_path(ns), rid="abc"), "'rid' must be"),
    (
        "rid twice",
        "*",
        lambda ns, e: mutate(e, _key_path(ns), rid="31416"),
        "two keys for device 31416",
    ),
    (
        "key not base64",
        "*",
        lambda ns, e: mutate(e, _key_path(ns), text="not base64!"),
        "not valid base64",
    ),
    ("key empty", "*", lambda ns, e: mutate(e, _key_path(ns), text=""), "empty"),
    (
        "key garbage",
        "*",
        lambda ns, e: mutate(e, _key_path(ns), text=b64(b"\x33" + b"\xff" * 40)),
        "not a valid OMEMO key",
    ),
    (
        "key oversized",
        "*",
        lambda ns, e: mutate(e, _key_path(ns), text="A" * 8192),
        "more than 4096",
    ),
    (
        "payload not base64",
        "*",
        lambda ns, e: mutate(e, f"{{{ns}}}payload", text="@@@@"),
        "not valid base64",
    ),
    (
        "payload oversized",
        "*",
        lambda ns, e: mutate(e, f"{{{ns}}}payload", text="A" * 70000),
        "more than 65536",
    ),
    (
        "unknown child",
        "*",
        lambda ns, e: e.append(etree.Element(f"{{{ns}}}extra")) or e,
        "unexpected child",
    ),
    (
        "foreign child",
        "*",
        lambda ns, e: e.append(etree.Element("{urn:example}x")) or e,
        "unexpected child",
    ),
    (
        "prekey maybe",
        OLDMEMO,
        lambda ns, e: mutate(e, _key_path(ns), prekey="maybe"),
        "'prekey' must be",
    ),
    (
        "iv 8 bytes",
        OLDMEMO,
        lambda ns, e: mutate(e, f"{OL}header/{OL}iv", text=b64(bytes(8))),
        "8 bytes, 12 or 16",
    ),
    ("no iv", OLDMEMO, lambda ns, e: _drop(e, f"{OL}header/{OL}iv"), "no <iv>"),
    ("two ivs", OLDMEMO, lambda ns, e: _dup(e, f"{OL}header/{OL}iv"), "<iv> occurs more than once"),
    ("kex maybe", TWOMEMO, lambda ns, e: mutate(e, _key_path(ns), kex="maybe"), "'kex' must be"),
    ("keys without jid", TWOMEMO, lambda ns, e: mutate(e, f"{TW}header/{TW}keys", jid=None), "jid"),
    (
        "keys jid oversized",
        TWOMEMO,
        lambda ns, e: mutate(e, f"{TW}header/{TW}keys", jid="a" * 4000),
        "'jid'",
    ),
    (
        "empty keys",
        TWOMEMO,
        lambda ns, e: e.find(f"{TW}header").append(etree.Element(f"{TW}keys", jid="x@y")) or e,
        "no <key>",
    ),
    ("header without keys", TWOMEMO, lambda ns, e: _drop(e, f"{TW}header/{TW}keys"), "no <keys>"),
    (
        "legacy key in OMEMO 2 header",
        TWOMEMO,
        lambda ns, e: e.find(f"{TW}header").append(etree.Element(f"{TW}key", rid="5")) or e,
        "unexpected child",
    ),
]


MESSAGE_CASES = [
    pytest.param(ns, change, match, id=f"{'old' if ns == OLDMEMO else 'two'}: {name}")
    for ns in (OLDMEMO, TWOMEMO)
    for name, only, change, match in BAD_MESSAGES
    if only in ("*", ns)
]


@pytest.mark.parametrize(("ns", "change", "match"), MESSAGE_CASES)
def test_malformed_messages(ns: str, change: Any, match: str) -> None:
    identity = ed()
    element = message(ns, identity, payload=True)
    with pytest.raises(MalformedOmemoElement, match=match):
        parse_any(ns, change(ns, element), identity)


@BOTH
def test_message_of_the_wrong_namespace(ns: str) -> None:
    other = TWOMEMO if ns == OLDMEMO else OLDMEMO
    identity = ed()
    with pytest.raises(MalformedOmemoElement, match="expected <encrypted"):
        parse_any(ns, message(other, identity), identity)


@BOTH
def test_key_limit(ns: str) -> None:
    identity = ed()
    parse_any(ns, message(ns, identity, keys=_codecs.MAX_KEYS), identity)
    with pytest.raises(MalformedOmemoElement, match="more than 512"):
        parse_any(ns, message(ns, identity, keys=_codecs.MAX_KEYS + 1), identity)


@BOTH
def test_random_corruption_gives_only_typed_errors(ns: str) -> None:
    """Flipped bytes and truncations in the keys' protobuf: a typed error or a message, never
    another exception (the backends' parsers raise several kinds)."""
    rng = random.Random(1234)
    identity = ed()
    element = message(ns, identity, keys=1)
    key = element.find(_key_path(ns))
    assert key is not None and key.text is not None
    original = base64.b64decode(key.text)
    outcomes = set()
    for _ in range(400):
        data = bytearray(original)
        if rng.random() < 0.5:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        else:
            data = data[: rng.randrange(len(data))]
        key.text = b64(bytes(data)) if data else "AA=="
        try:
            parse_any(ns, element, identity)
            outcomes.add("parsed")
        except MalformedOmemoElement:
            outcomes.add("refused")
    assert "refused" in outcomes


def test_the_errors_name_the_element() -> None:
    with pytest.raises(MalformedOmemoElement) as info:
        _codecs.parse_device_list(TWOMEMO, devices_xml(TWOMEMO, "<device id='x'/>"))
    assert info.value.namespace == TWOMEMO
    assert info.value.element == "device"
    assert "OMEMO 2 <device>" in str(info.value)
    from jet_trio import RemoteProtocolError

    assert isinstance(info.value, RemoteProtocolError)


def test_library_codecs_differ_only_where_documented() -> None:
    """The backends' schema refuses unknown attributes; ours ignores them (see the module doc),
    and ours refuses what the library would crash on (a header without sid)."""
    identity = ed()
    element = message(TWOMEMO, identity)
    header = element.find(f"{TW}header")
    assert header is not None
    del header.attrib["sid"]
    with pytest.raises(MalformedOmemoElement, match="no 'sid'"):
        parse_any(TWOMEMO, element, identity)
    with pytest.raises(TypeError):  # int(None) inside twomemo.etree
        twomemo.etree.parse_message(lxml_to_et(element), "romeo@montague.lit")


_DEVICE_IDS = st.integers(min_value=1, max_value=2**32 - 1)
_LABELS = st.one_of(
    st.none(),
    st.builds(
        SignedLabel,
        label=st.text(
            st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn")), max_size=40
        ),
        signature=st.binary(min_size=64, max_size=64),
    ),
)


@BOTH
@settings(max_examples=60, deadline=None)
@given(devices=st.dictionaries(_DEVICE_IDS, _LABELS, max_size=20))
def test_any_device_list_round_trips_with_the_library(ns: str, devices: DeviceList) -> None:
    if ns == OLDMEMO:  # no labels in legacy OMEMO
        devices = dict.fromkeys(devices)
    lib_mod: Any = oldmemo.etree if ns == OLDMEMO else twomemo.etree
    assert lib_mod.parse_device_list(lxml_to_et(_codecs.serialize_device_list(ns, devices))) == (
        devices
    )
    theirs = et_to_lxml(lib_mod.serialize_device_list(devices))
    assert _codecs.parse_device_list(ns, theirs) == devices
