"""XEP-0300 hashes: elements, algorithm choice and the incremental hasher."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from jet_trio._errors import RemoteProtocolError, SecurityError
from jet_trio._transfer.hashes import (
    ALGORITHMS,
    DEFAULT_ALGO,
    Hash,
    Hasher,
    HashError,
    HashMismatch,
    InvalidHash,
    algo_feature,
    algos_from_features,
    build_hash,
    build_hash_used,
    choose_algo,
    parse_hash_elements,
    strongest,
)
from jet_trio._xmpp import ns as _ns

# Published test vectors for the message "abc".
ABC = {
    "sha-1": "a9993e364706816aba3e25717850c26c9cd0d89d",
    "sha-256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    "sha-512": (
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
    ),
    "blake2b-512": (
        "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"
        "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"
    ),
}
H = f"{{{_ns.HASHES}}}"


def _el(xml: str) -> etree._Element:
    return etree.fromstring(f"<file xmlns:h='{_ns.HASHES}'>{xml}</file>")


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def test_default_is_sha256_and_order_is_strongest_first() -> None:
    assert DEFAULT_ALGO == "sha-256"
    assert ALGORITHMS == ("blake2b-512", "sha-512", "blake2b-256", "sha-256", "sha-1")


@pytest.mark.parametrize("algo", sorted(ABC))
def test_hasher_matches_published_vectors(algo: str) -> None:
    hasher = Hasher([algo])
    hasher.update(b"a")
    hasher.update(memoryview(b"bc"))
    assert hasher.digest(algo).digest.hex() == ABC[algo]
    assert hasher.length == 3


def test_hasher_several_algorithms_and_digest_does_not_finalise() -> None:
    hasher = Hasher(["sha-256", "sha-1", "sha-256"])
    assert hasher.algos == ("sha-256", "sha-1")
    hasher.update(b"ab")
    hasher.digests()
    hasher.update(b"c")
    assert {h.algo: h.digest.hex() for h in hasher.digests()} == {
        "sha-256": ABC["sha-256"],
        "sha-1": ABC["sha-1"],
    }


def test_blake2b_256_size() -> None:
    hasher = Hasher(["blake2b-256"])
    assert len(hasher.digest("blake2b-256").digest) == 32
    assert hasher.digest("blake2b-256").digest.hex().startswith("0e5751c026e543b2")


@pytest.mark.parametrize("algos", [[], ["md5"], ["sha-256", "sha3-256"]])
def test_hasher_rejects_unknown_or_no_algorithm(algos: list[str]) -> None:
    with pytest.raises(InvalidHash):
        Hasher(algos)


def test_hasher_digest_of_algo_not_computed() -> None:
    with pytest.raises(InvalidHash, match="sha-1"):
        Hasher(["sha-256"]).digest("sha-1")


def test_verify_and_matches() -> None:
    hasher = Hasher(["sha-256", "sha-1"])
    hasher.update(b"abc")
    good = Hash("sha-256", bytes.fromhex(ABC["sha-256"]))
    bad = Hash("sha-1", bytes(20))
    other = Hash("sha-512", bytes(64))
    assert hasher.matches([good])
    assert hasher.matches([good, other])
    assert not hasher.matches([good, bad])
    assert not hasher.matches([other])
    assert not hasher.matches([])
    hasher.verify([good, other])
    with pytest.raises(HashMismatch, match="does not match"):
        hasher.verify([good, bad])
    with pytest.raises(HashMismatch, match="no hash to check"):
        hasher.verify([other])
    assert issubclass(HashMismatch, SecurityError)


def test_hash_validates_locally() -> None:
    with pytest.raises(InvalidHash, match="unsupported"):
        Hash("md5", bytes(16))
    with pytest.raises(InvalidHash, match="32 bytes"):
        Hash("sha-256", bytes(20))


def test_build_hash_wire_form() -> None:
    el = build_hash(Hash("sha-1", bytes.fromhex(ABC["sha-1"])))
    assert etree.tostring(el) == (
        b'<hash xmlns="urn:xmpp:hashes:2" algo="sha-1">qZk+NkcGgWq6PiVxeFDCbJzQ2J0=</hash>'
    )
    used = build_hash_used("sha-256")
    assert etree.tostring(used) == b'<hash-used xmlns="urn:xmpp:hashes:2" algo="sha-256"/>'
    with pytest.raises(InvalidHash):
        build_hash_used("md5")


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_round_trip_every_algorithm(algo: str) -> None:
    hasher = Hasher([algo])
    hasher.update(b"round trip")
    value = hasher.digest(algo)
    parent = etree.Element("file")
    parent.append(build_hash(value))
    parent.append(build_hash_used(algo))
    assert parse_hash_elements(parent) == ((value,), ())


def test_parse_dino_hash() -> None:
    hashes, used = parse_hash_elements(
        _el("<h:hash algo='sha-256'>MA6D8x6uZq73N8aOPXa+3rKU11528TtpHCYDA6b5x1I=</h:hash>")
    )
    assert used == ()
    assert hashes[0].algo == "sha-256"
    assert hashes[0].digest.hex().startswith("300e83f31eae66aef7")


def test_parse_unknown_ignored_when_others_present() -> None:
    hashes, used = parse_hash_elements(
        _el(
            f"<h:hash algo='md5'>AAAAAAAAAAAAAAAAAAAAAA==</h:hash>"
            f"<h:hash algo='sha-1'>{_b64(ABC['sha-1'])}</h:hash>"
            "<h:hash-used algo='sha3-512'/><other algo='x'/>"
        )
    )
    assert [h.algo for h in hashes] == ["sha-1"]
    assert used == ()


def test_parse_unknown_only_hash_used_counts() -> None:
    assert parse_hash_elements(_el("<h:hash-used algo='md5'/><h:hash-used algo='sha-1'/>")) == (
        (),
        ("sha-1",),
    )


def test_parse_empty_hash_is_hash_used_and_whitespace_tolerated() -> None:
    hashes, used = parse_hash_elements(
        _el(f"<h:hash algo='sha-512'/><h:hash algo='sha-1'>\n  {_b64(ABC['sha-1'])}\n</h:hash>")
    )
    assert used == ("sha-512",)
    assert hashes == (Hash("sha-1", bytes.fromhex(ABC["sha-1"])),)


def test_parse_nothing() -> None:
    assert parse_hash_elements(_el("")) == ((), ())


@pytest.mark.parametrize(
    ("xml", "match"),
    [
        ("<h:hash algo='md5'>AAAAAAAAAAAAAAAAAAAAAA==</h:hash>", "no supported hash algorithm"),
        ("<h:hash-used algo='sha3-256'/>", "no supported"),
        ("<h:hash>AAAA</h:hash>", "without an 'algo'"),
        ("<h:hash algo=''>AAAA</h:hash>", "without an 'algo'"),
        ("<h:hash algo='sha-1'>not base64!</h:hash>", "not valid base64"),
        ("<h:hash algo='sha-1'>AAAA</h:hash>", "20 bytes, not 3"),
        ("<h:hash algo='sha-1'>" + "A" * 200 + "</h:hash>", "too long"),
        ("<h:hash-used algo='sha-1'>AAAA</h:hash-used>", "must be empty"),
        (
            f"<h:hash algo='sha-1'>{_b64(ABC['sha-1'])}</h:hash>"
            f"<h:hash algo='sha-1'>{base64.b64encode(bytes(20)).decode()}</h:hash>",
            "two different",
        ),
    ],
)
def test_parse_rejects_malformed(xml: str, match: str) -> None:
    with pytest.raises(HashError, match=match):
        parse_hash_elements(_el(xml))
    assert issubclass(HashError, RemoteProtocolError)


def test_parse_identical_duplicate_collapses() -> None:
    one = f"<h:hash algo='sha-1'>{_b64(ABC['sha-1'])}</h:hash>"
    hashes, _ = parse_hash_elements(_el(one + one))
    assert len(hashes) == 1


def test_choose_algo_strongest_common() -> None:
    assert choose_algo(["sha-1", "sha-256", "sha-512"], ["sha-256", "sha-512"]) == "sha-512"
    assert choose_algo(["sha-1", "sha-256"], ["blake2b-256", "sha-256"]) == "sha-256"
    assert choose_algo(["sha-256"], ["sha-1"]) is None
    assert choose_algo(["md5"], ["md5"]) is None


def test_strongest() -> None:
    weak = Hash("sha-1", bytes(20))
    strong = Hash("blake2b-256", bytes(32))
    assert strongest([weak, strong]) is strong
    assert strongest([]) is None


def test_disco_features() -> None:
    assert algo_feature("sha-256") == _ns.HASH_SHA256
    assert algo_feature("blake2b-512") == _ns.HASH_BLAKE2B512
    with pytest.raises(InvalidHash):
        algo_feature("md5")
    features = [_ns.HASHES, _ns.HASH_SHA1, _ns.HASH_BLAKE2B256, "urn:xmpp:jingle:1"]
    assert algos_from_features(features) == {"sha-1", "blake2b-256"}


@given(st.lists(st.binary(max_size=64), max_size=8))
def test_chunking_does_not_change_digests(chunks: list[bytes]) -> None:
    whole = Hasher(ALGORITHMS)
    whole.update(b"".join(chunks))
    split = Hasher(ALGORITHMS)
    for chunk in chunks:
        split.update(chunk)
    assert whole.digests() == split.digests()
    assert split.matches(whole.digests())
