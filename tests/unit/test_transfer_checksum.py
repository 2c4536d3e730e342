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
