"""The sans-IO parts: <signcrypt> codec and checks, <openpgp>, PEP payloads, sealing."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pysequoia
import pytest
from jet_trio import JID
from jet_trio._plugins.builtin_ciphers import AES128GCM, AES256GCM
from jet_trio.plugin import EnvelopeError, EnvelopeSenderMismatch, TransportSecret
from lxml import etree

from jet_trio_openpgp import (
    MalformedEnvelope,
    ReplayedEnvelope,
    StaleEnvelope,
    UndecryptableEnvelope,
    WrongRecipient,
    WrongSigner,
)
from jet_trio_openpgp._pep import (
    KeyMetadata,
    build_key_list,
    build_pubkey,
    key_node,
    parse_key_list,
    parse_pubkey,
)
from jet_trio_openpgp._signcrypt import (
    NS,
    PAYLOAD_NS,
    ReplayCache,
    build_openpgp,
    build_signcrypt,
    check_signcrypt,
    format_stamp,
    open_message,
    parse_openpgp,
    parse_signcrypt,
    seal_message,
)

NOW = datetime(2026, 11, 22, 3, 40, 0, tzinfo=UTC)
BOB = JID("bob@example.org")
ALICE = JID("alice@example.org/phone")


def secret() -> TransportSecret:
    return TransportSecret.generate(AES256GCM)


def signcrypt_xml(body: str) -> bytes:
    return f"<signcrypt xmlns='{NS}'>{body}</signcrypt>".encode()


GOOD_TIME = "<time stamp='2026-11-22T03:40:00Z'/>"
GOOD_PAYLOAD = (
    f"<payload><jet-secret xmlns='{PAYLOAD_NS}' cipher='urn:x'>"
    + base64.b64encode(b"k" * 44).decode()
    + "</jet-secret></payload>"
)


# -- <signcrypt> -----------------------------------------------------------


def test_signcrypt_round_trip() -> None:
    s = secret()
    data = build_signcrypt(s, JID("bob@example.org/laptop"), NOW)
    root = etree.fromstring(data)
    assert root.tag == f"{{{NS}}}signcrypt"
    assert [c.tag.split("}")[1] for c in root] == ["to", "time", "rpad", "payload"]
    assert root.find(f"{{{NS}}}to").get("jid") == "bob@example.org"  # type: ignore[union-attr]
    sc = parse_signcrypt(data)
    assert sc.to == (BOB,)
    assert sc.stamp == NOW
    assert sc.cipher == AES256GCM.urn
    assert sc.secret == s.to_bytes()
    assert not data.startswith(b"<?xml")


def test_rpad_is_random_length() -> None:
    s = secret()
    lengths = {len(build_signcrypt(s, BOB, NOW)) for _ in range(20)}
    assert len(lengths) > 5
    pad = etree.fromstring(build_signcrypt(s, BOB, NOW, rpad="xyz")).find(f"{{{NS}}}rpad")
    assert pad is not None and pad.text == "xyz"


def test_format_stamp_is_utc_with_z() -> None:
    cet = datetime(2026, 11, 22, 4, 40, tzinfo=UTC).astimezone(
        __import__("datetime").timezone(timedelta(hours=1))
    )
    assert format_stamp(cet) == "2026-11-22T04:40:00Z"


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"<other xmlns='urn:xmpp:openpgp:0'/>", "expected <signcrypt"),
        (signcrypt_xml(GOOD_TIME + GOOD_PAYLOAD), "no <to>"),
        (signcrypt_xml("<to jid='bob@example.org'/>" + GOOD_PAYLOAD), "exactly one <time>"),
        (
            signcrypt_xml("<to jid='bob@example.org'/>" + GOOD_TIME * 2 + GOOD_PAYLOAD),
            "exactly one <time>",
        ),
        (
            signcrypt_xml(
                "<to jid='bob@example.org'/><time stamp='2026-11-22T03:40:00'/>" + GOOD_PAYLOAD
            ),
            "no time zone",
        ),
        (
            signcrypt_xml("<to jid='bob@example.org'/><time stamp='yesterday'/>" + GOOD_PAYLOAD),
            "not a date",
        ),
        (signcrypt_xml("<to jid='@@'/>" + GOOD_TIME + GOOD_PAYLOAD), "invalid <to jid>"),
        (signcrypt_xml("<to jid='bob@example.org'/>" + GOOD_TIME), "exactly one <payload>"),
        (
            signcrypt_xml("<to jid='bob@example.org'/>" + GOOD_TIME + "<payload/>"),
            "one <jet-secret",
        ),
        (
            signcrypt_xml(
                "<to jid='bob@example.org'/>"
                + GOOD_TIME
                + f"<payload><jet-secret xmlns='{PAYLOAD_NS}'>AAAA</jet-secret></payload>"
            ),
            "no cipher",
        ),
        (
            signcrypt_xml(
                "<to jid='bob@example.org'/>"
                + GOOD_TIME
                + f"<payload><jet-secret xmlns='{PAYLOAD_NS}' cipher='c'>!!</jet-secret>"
                "</payload>"
            ),
            "not valid base64",
        ),
        (b"<!DOCTYPE x [<!ENTITY e 'boom'>]>" + signcrypt_xml("&e;"), "DOCTYPE"),
        (signcrypt_xml("<!-- hi -->"), "comment"),
        (b"<?pi x?>" + signcrypt_xml(""), "processing"),
        (b"<signcrypt", "not well-formed"),
        (signcrypt_xml("<rpad>" + "x" * 20_000 + "</rpad>"), "too large"),
    ],
)
def test_malformed_signcrypt_refused(data: bytes, match: str) -> None:
    with pytest.raises(MalformedEnvelope, match=match):
        parse_signcrypt(data)


def test_check_accepts_good_envelope() -> None:
    sc = parse_signcrypt(build_signcrypt(secret(), BOB, NOW))
    check_signcrypt(sc, JID("bob@example.org/res"), NOW, cipher=AES256GCM)
    # Exactly at the edge of the window is still accepted.
    check_signcrypt(sc, BOB, NOW + timedelta(minutes=5))
    check_signcrypt(sc, BOB, NOW - timedelta(minutes=5))


def test_check_wrong_recipient() -> None:
    sc = parse_signcrypt(build_signcrypt(secret(), JID("carol@example.org"), NOW))
    with pytest.raises(WrongRecipient, match=r"addressed to carol@example\.org, not to bob"):
        check_signcrypt(sc, BOB, NOW)


@pytest.mark.parametrize(
    ("offset", "word"), [(timedelta(minutes=6), "old"), (-timedelta(minutes=6), "future")]
)
def test_check_stale(offset: timedelta, word: str) -> None:
    sc = parse_signcrypt(build_signcrypt(secret(), BOB, NOW))
    with pytest.raises(StaleEnvelope, match=word):
        check_signcrypt(sc, BOB, NOW + offset)
    # A wider window accepts it.
    check_signcrypt(sc, BOB, NOW + offset, timedelta(minutes=10))


def test_check_cipher_binding() -> None:
    sc = parse_signcrypt(build_signcrypt(secret(), BOB, NOW))
    with pytest.raises(MalformedEnvelope, match="binds the secret to cipher"):
        check_signcrypt(sc, BOB, NOW, cipher=AES128GCM)
    aliased = parse_signcrypt(
        build_signcrypt(secret(), BOB, NOW).replace(b"nopadding", b"nopadding:0")
    )
    check_signcrypt(aliased, BOB, NOW, cipher=AES256GCM)


def test_replay_cache() -> None:
    cache = ReplayCache(timedelta(minutes=5))
    a, b = build_signcrypt(secret(), BOB, NOW), build_signcrypt(secret(), BOB, NOW)
    cache.check_and_add(a, NOW, NOW)
    cache.check_and_add(b, NOW, NOW)
    with pytest.raises(ReplayedEnvelope, match="replay"):
        cache.check_and_add(a, NOW, NOW + timedelta(minutes=4))
    # Entries go once their stamp is out of the window (the time check refuses them then).
    cache.check_and_add(build_signcrypt(secret(), BOB, NOW), NOW, NOW + timedelta(minutes=6))
    assert len(cache) == 1


def test_replay_cache_is_bounded() -> None:
    cache = ReplayCache(max_entries=3)
    for _ in range(10):
        cache.check_and_add(build_signcrypt(secret(), BOB, NOW), NOW, NOW)
    assert len(cache) == 3


# -- <openpgp> -----------------------------------------------------------


def test_openpgp_element() -> None:
    el = build_openpgp(b"\x00\x01binary")
    assert el.tag == f"{{{NS}}}openpgp" and el.nsmap == {None: NS}
    assert parse_openpgp(el) == b"\x00\x01binary"
    el.text = "AAFi\n aW5hcnk="  # whitespace is allowed inside the base64
    assert parse_openpgp(el) == b"\x00\x01binary"


@pytest.mark.parametrize(
    ("xml", "match"),
    [
        (f"<openpgp xmlns='{NS}'/>", "empty"),
        (f"<openpgp xmlns='{NS}'>***</openpgp>", "base64"),
        (f"<openpgp xmlns='{NS}'>{'A' * 40_000}</openpgp>", "too large"),
        ("<openpgp xmlns='urn:other'>AAAA</openpgp>", "expected <openpgp"),
    ],
)
def test_openpgp_element_refused(xml: str, match: str) -> None:
    with pytest.raises(MalformedEnvelope, match=match):
        parse_openpgp(etree.fromstring(xml))


def test_errors_are_envelope_errors() -> None:
    assert issubclass(WrongSigner, EnvelopeSenderMismatch)
    for cls in (MalformedEnvelope, ReplayedEnvelope, StaleEnvelope, WrongRecipient, WrongSigner):
        assert issubclass(cls, EnvelopeError)


# -- PEP payloads -----------------------------------------------------------


def test_pubkey_round_trip() -> None:
    el = build_pubkey(b"\x99key")
    assert el.tag == f"{{{NS}}}pubkey" and el[0].tag == f"{{{NS}}}data"
    assert parse_pubkey(el, "bob") == b"\x99key"


def test_key_list_round_trip_and_filtering() -> None:
    fpr = "a" * 40
    el = build_key_list([KeyMetadata(fpr, "2026-01-01T00:00:00Z")])
    meta = el[0]
    assert meta.get("v4-fingerprint") == "A" * 40
    extra = etree.SubElement(el, f"{{{NS}}}pubkey-metadata", {"v4-fingerprint": "nothex"})
    etree.SubElement(el, f"{{{NS}}}pubkey-metadata", {"v4-fingerprint": "A" * 40})
    assert extra is not None
    assert parse_key_list(el) == [KeyMetadata("A" * 40, "2026-01-01T00:00:00Z")]
    assert key_node(fpr) == f"{NS}:public-keys:{'A' * 40}"


# -- the OpenPGP layer -----------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> dict[str, pysequoia.Tsk]:
    return {n: pysequoia.Tsk.generate(f"xmpp:{n}@example.org") for n in ("alice", "bob", "carol")}


def cert(tsk: pysequoia.Tsk) -> pysequoia.Cert:
    return tsk.extract_certificate()


def test_seal_and_open(keys: dict[str, pysequoia.Tsk]) -> None:
    a, b = keys["alice"], keys["bob"]
    msg = seal_message(b"<signcrypt/>", [cert(b), cert(a)], a)
    plaintext, signer = open_message(msg, b, [cert(a)], ALICE)
    assert plaintext == b"<signcrypt/>"
    assert signer == cert(a).fingerprint.upper()
    # The sender can read its own envelope too.
    assert open_message(msg, a, [cert(a)], ALICE)[0] == b"<signcrypt/>"


def test_open_wrong_signer(keys: dict[str, pysequoia.Tsk]) -> None:
    msg = seal_message(b"x", [cert(keys["bob"])], keys["carol"])
    with pytest.raises(WrongSigner, match=r"not signed by any key alice@example\.org published"):
        open_message(msg, keys["bob"], [cert(keys["alice"])], ALICE)


def test_open_not_for_us(keys: dict[str, pysequoia.Tsk]) -> None:
    msg = seal_message(b"x", [cert(keys["carol"])], keys["alice"])
    with pytest.raises(UndecryptableEnvelope, match="cannot be decrypted"):
        open_message(msg, keys["bob"], [cert(keys["alice"])], ALICE)


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9, 0.999])
def test_open_tampered(keys: dict[str, pysequoia.Tsk], where: float) -> None:
    msg = bytearray(seal_message(b"x" * 100, [cert(keys["bob"])], keys["alice"]))
    msg[int(len(msg) * where)] ^= 0x01
    with pytest.raises((UndecryptableEnvelope, WrongSigner)):
        open_message(bytes(msg), keys["bob"], [cert(keys["alice"])], ALICE)
