"""The sans-IO decisions of resuming by sending again (XEP-0234 6.1 ranged transfers):
which kept partial download a new offer continues (:func:`resume_offset`), and which part
of its file a sender sends after a session-accept (:func:`accepted_range`)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import pytest
from lxml import etree

from jet_trio import JID
from jet_trio._jingle.message import Content, JingleAction, JingleMessage, Role, Senders
from jet_trio._transfer.description import (
    FileDescription,
    Range,
    build_description,
)
from jet_trio._transfer.files import Partial, lock_part
from jet_trio._transfer.hashes import Hash
from jet_trio._transfer.service import _find_kept
from jet_trio._transfer.session import (
    KeptDownload,
    accepted_range,
    offers_ranges,
    resume_offset,
)
from jet_trio._transfer.types import TransferError

SIZE = 1000
DIGEST = hashlib.sha256(b"the file").digest()
ALICE = JID("alice@example.org/laptop")

OFFER = FileDescription(
    name="photo.jpg", size=SIZE, hashes=(Hash("sha-256", DIGEST),), range=Range()
)
KEPT = KeptDownload(
    peer=JID("alice@example.org/phone"),  # another resource of the same account
    name="photo.jpg",
    size=SIZE,
    sha256=DIGEST.hex(),
    encrypted=True,
    received=600,
)


def test_the_same_file_from_the_same_account_continues() -> None:
    assert resume_offset(OFFER, ALICE, True, KEPT) == 600
    # A record made from an offer without a hash: the hash of this one verifies the file.
    assert resume_offset(OFFER, ALICE, True, dataclasses.replace(KEPT, sha256="")) == 600
    # An offer without a hash, announcing one for after the data (<checksum/>).
    later = dataclasses.replace(OFFER, hashes=(), hash_used=("sha-256",))
    assert resume_offset(later, ALICE, True, KEPT) == 600
    # Kept unencrypted, offered unencrypted; kept encrypted, offered unencrypted.
    plain = dataclasses.replace(KEPT, encrypted=False)
    assert resume_offset(OFFER, ALICE, False, plain) == 600
    assert resume_offset(OFFER, ALICE, False, KEPT) == 600


@pytest.mark.parametrize(
    ("why", "offer", "sender", "encrypted", "kept"),
    [
        ("another sender", OFFER, JID("mallory@example.org/laptop"), True, KEPT),
        ("another server", OFFER, JID("alice@example.net/laptop"), True, KEPT),
        ("another name", dataclasses.replace(OFFER, name="other.jpg"), ALICE, True, KEPT),
        ("another size", dataclasses.replace(OFFER, size=SIZE + 1), ALICE, True, KEPT),
        (
            "another hash",
            dataclasses.replace(OFFER, hashes=(Hash("sha-256", bytes(32)),)),
            ALICE,
            True,
            KEPT,
        ),
        ("no ranges (Dino)", dataclasses.replace(OFFER, range=None), ALICE, True, KEPT),
        (
            "a range that is not the whole file",
            dataclasses.replace(OFFER, range=Range(10)),
            ALICE,
            True,
            KEPT,
        ),
        (
            "nothing to verify the file with",
            dataclasses.replace(OFFER, hashes=()),
            ALICE,
            True,
            KEPT,
        ),
        (
            "kept unencrypted, offered encrypted",
            OFFER,
            ALICE,
            True,
            dataclasses.replace(KEPT, encrypted=False),
        ),
        ("nothing kept", OFFER, ALICE, True, dataclasses.replace(KEPT, received=0)),
        ("all kept", OFFER, ALICE, True, dataclasses.replace(KEPT, received=SIZE)),
    ],
)
def test_what_is_not_continued(
    why: str, offer: FileDescription, sender: JID, encrypted: bool, kept: KeptDownload
) -> None:
    assert resume_offset(offer, sender, encrypted, kept) == 0, why


def test_offers_ranges() -> None:
    assert offers_ranges(OFFER)
    assert not offers_ranges(dataclasses.replace(OFFER, range=None))
    assert not offers_ranges(dataclasses.replace(OFFER, range=Range(0, 10)))
    # What a sender puts in its offer to say so: an empty <range/>.
    built = etree.tostring(build_description(OFFER)).decode()
    assert "<range/>" in built


def _accept(file: FileDescription | None, raw: str | None = None) -> JingleMessage:
    description = None
    if file is not None:
        description = build_description(file)
    if raw is not None:
        description = etree.fromstring(raw)
    content = Content(Role.INITIATOR, "a-file-offer", Senders.INITIATOR, description, None)
    return JingleMessage(JingleAction.SESSION_ACCEPT, "sid1", contents=(content,))


def test_accepted_range() -> None:
    plain = FileDescription(name="photo.jpg", size=SIZE)
    assert accepted_range(_accept(plain), SIZE) == (0, SIZE)  # Dino echoes no range
    assert accepted_range(_accept(None), SIZE) == (0, SIZE)
    assert accepted_range(_accept(OFFER), SIZE) == (0, SIZE)  # our own <range/> echoed
    asked = dataclasses.replace(plain, range=Range(600))
    assert accepted_range(_accept(asked), SIZE) == (600, 400)
    part = dataclasses.replace(plain, range=Range(100, 50))
    assert accepted_range(_accept(part), SIZE) == (100, 50)
    assert accepted_range(_accept(dataclasses.replace(plain, range=Range(SIZE))), SIZE) == (
        SIZE,
        0,
    )


@pytest.mark.parametrize(
    "file_xml",
    [
        "<file><range offset='1001'/></file>",  # beyond the end
        "<file><range offset='900' length='101'/></file>",
        "<file><range offset='-1'/></file>",
        "<file><range offset='x'/></file>",
        "<file><range offset='1'/><range offset='2'/></file>",
    ],
)
def test_a_bad_range_is_refused(file_xml: str) -> None:
    raw = f"<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'>{file_xml}</description>"
    with pytest.raises(TransferError) as caught:
        accepted_range(_accept(None, raw), SIZE)
    assert caught.value.reason == "failed-application"


def test_a_loose_echo_without_range_is_not_refused() -> None:
    """A session-accept may echo the offer loosely (Conversations' <mediaType/>, unknown
    children): only a range in it matters to the sender."""
    raw = (
        "<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file><mediaType>x/y"
        "</mediaType><name>a</name><name>b</name><size>zz</size></file></description>"
    )
    assert accepted_range(_accept(None, raw), SIZE) == (0, SIZE)


# -- the receiver's side on disk: which kept partial, held by one download -------------------


def _kept_partial(directory: Path, peer: str, received: int, sha: str = DIGEST.hex()) -> Partial:
    p = Partial.create(directory / "photo.jpg", JID(peer), "photo.jpg", SIZE, sha, "urn:x:env")
    p.part.write_bytes(bytes(received))
    p.save()
    return p


def test_one_download_at_a_time_holds_a_partial(tmp_path: Path) -> None:
    p = _kept_partial(tmp_path, "alice@example.org/phone", 10)
    first = lock_part(p.part)
    assert first is not None
    try:
        assert lock_part(p.part) is None  # held (also across processes: flock)
    finally:
        os.close(first)
    again = lock_part(p.part)
    assert again is not None
    os.close(again)


def test_the_kept_partial_found_for_an_offer(tmp_path: Path) -> None:
    """The partial with the most bytes among those of the same file from the same account;
    one held by another download is skipped; another sender's never."""
    dest = tmp_path / "photo.jpg"
    _kept_partial(tmp_path, "mallory@example.org/x", 900)  # more bytes, another sender
    small = _kept_partial(tmp_path, "alice@example.org/phone", 100)
    big = _kept_partial(tmp_path, "alice@example.org/tablet", 600)
    found = _find_kept(dest, ALICE, OFFER, True)
    assert found is not None and found.partial.part == big.part and found.offset == 600
    try:
        # Held by that download: a second offer meanwhile gets the other one.
        other = _find_kept(dest, ALICE, OFFER, True)
        assert other is not None and other.partial.part == small.part and other.offset == 100
        os.close(other.lock)
    finally:
        os.close(found.lock)
    assert _find_kept(dest, JID("carol@example.org/c"), OFFER, True) is None
    assert _find_kept(tmp_path / "other.jpg", ALICE, OFFER, True) is None
