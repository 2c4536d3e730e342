"""Which announced hashes a received file is checked against (INTEROP.md: accept a checksum of
either the plaintext or the bytes on the wire, since deployed clients disagree)."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from typing import Any

import pytest

from jet_trio import JID, IntegrityError
from jet_trio._jingle.machine import JingleSession
from jet_trio._jingle.message import Role
from jet_trio._transfer.description import FileDescription
from jet_trio._transfer.driver import Digests as _Digests
from jet_trio._transfer.driver import SessionShell as _Session
from jet_trio._transfer.hashes import Hash
from jet_trio._transfer.service import FileTransfer
from jet_trio._transfer.session import FileSession

PLAIN = hashlib.sha256(b"plaintext").digest()
WIRE = hashlib.sha256(b"ciphertext+tag").digest()


def session_with_checksum(*hashes: Hash) -> _Session:
    jingle = JingleSession(Role.RESPONDER, "sid", JID("me@x/r"), JID("peer@x/r"))
    s = _Session(SimpleNamespace(), 1.0, FileSession(jingle))  # type: ignore[arg-type]
    s.machine.checksum = hashes
    s.machine.has_checksum = True
    return s


async def verify(file: FileDescription, session: _Session, got: _Digests) -> bool:
    service: Any = SimpleNamespace(_timeout=1.0)
    return await FileTransfer._verify_hash(service, session, file, got)


async def test_checksum_of_plaintext_accepted() -> None:
    file = FileDescription(name="f", size=9, hash_used=("sha-256",))
    s = session_with_checksum(Hash("sha-256", PLAIN))
    assert await verify(file, s, _Digests({"sha-256": PLAIN}, {"sha-256": WIRE}))


async def test_checksum_of_wire_bytes_accepted() -> None:
    file = FileDescription(name="f", size=9, hash_used=("sha-256",))
    s = session_with_checksum(Hash("sha-256", WIRE))
    assert await verify(file, s, _Digests({"sha-256": PLAIN}, {"sha-256": WIRE}))


async def test_checksum_matching_neither_is_refused() -> None:
    file = FileDescription(name="f", size=9, hash_used=("sha-256",))
    s = session_with_checksum(Hash("sha-256", hashlib.sha256(b"other").digest()))
    with pytest.raises(IntegrityError, match="does not match"):
        await verify(file, s, _Digests({"sha-256": PLAIN}, {"sha-256": WIRE}))


async def test_hash_in_offer_must_match_plaintext() -> None:
    file = FileDescription(name="f", size=9, hashes=(Hash("sha-256", WIRE),))
    s = session_with_checksum()
    with pytest.raises(IntegrityError):
        await verify(file, s, _Digests({"sha-256": PLAIN}, {}))
    ok = FileDescription(name="f", size=9, hashes=(Hash("sha-256", PLAIN),))
    assert await verify(ok, s, _Digests({"sha-256": PLAIN}, {}))


async def test_no_known_hash_reports_unverified() -> None:
    file = FileDescription(name="f", size=9)  # Dino sends no hash at all
    assert not await verify(file, session_with_checksum(), _Digests({"sha-256": PLAIN}, {}))


async def test_an_unannounced_checksum_that_came_is_checked() -> None:
    """No hash nor <hash-used/> in the offer, but a <checksum/> arrived with the data (as
    Conversations sends it): it is checked, not ignored."""
    file = FileDescription(name="f", size=9)
    s = session_with_checksum(Hash("sha-256", hashlib.sha256(b"other").digest()))
    with pytest.raises(IntegrityError, match="does not match"):
        await verify(file, s, _Digests({"sha-256": PLAIN}, {"sha-256": WIRE}))
    s = session_with_checksum(Hash("sha-256", WIRE))
    assert await verify(file, s, _Digests({"sha-256": PLAIN}, {"sha-256": WIRE}))


async def test_an_announced_checksum_that_never_comes() -> None:
    """<hash-used/> and no checksum within the timeout: an encrypted file (its tag verified)
    is kept unverified by hash; an unencrypted one is refused."""
    file = FileDescription(name="f", size=9, hash_used=("sha-256",))
    s = session_with_checksum()
    s.machine.has_checksum = False
    service: Any = SimpleNamespace(_timeout=0.05)
    got = _Digests({"sha-256": PLAIN}, {})
    assert not await FileTransfer._verify_hash(service, s, file, got, encrypted=True)
    with pytest.raises(IntegrityError, match="sent none"):
        await FileTransfer._verify_hash(service, s, file, got, encrypted=False)


def test_the_checksum_session_info_names_the_content() -> None:
    from jet_trio._jingle.message import JingleAction
    from jet_trio._transfer.description import parse_checksum
    from jet_trio._transfer.session import CONTENT_NAME

    jingle = JingleSession(Role.INITIATOR, "sid", JID("me@x/r"), JID("peer@x/r"))
    machine = FileSession(jingle)
    description = FileDescription(name="f", size=9, hash_used=("sha-256",))
    from jet_trio._transfer.description import build_description
    from jet_trio._transports.ibb import IBBTransport, build_transport

    machine.initiate(
        build_description(description),
        build_transport(IBBTransport("i", 4096)),
        None,
        request=False,
    )
    msg = machine.checksum_info((Hash("sha-256", PLAIN),))
    assert msg is not None and msg.action is JingleAction.SESSION_INFO
    assert msg.info is not None
    checksum = parse_checksum(msg.info)
    assert checksum.name == CONTENT_NAME and checksum.creator is Role.INITIATOR
    assert checksum.hashes == (Hash("sha-256", PLAIN),)
    jingle.terminate()
    assert machine.checksum_info((Hash("sha-256", PLAIN),)) is None
