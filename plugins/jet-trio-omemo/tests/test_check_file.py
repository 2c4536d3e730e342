"""The check file of a prepared OMEMO (``_prepared.read_check_file``) against the store it
describes, written by :class:`SQLiteStorage` as the full session writes it: its values are used
only while the store holds exactly the contents they were read from."""

from __future__ import annotations

import json
from pathlib import Path

from jet_trio_omemo import OLDMEMO, TWOMEMO, SQLiteStorage
from jet_trio_omemo._prepared import check_file_path, read_check_file, refresh_check_file

OWN = "alice@example.org"
NAMESPACES = (OLDMEMO, TWOMEMO)


async def make_store(path: Path, device: int = 1234, stamp: int = 1_000) -> None:
    store = SQLiteStorage(path)
    await store.store("/own_device_id", device)
    await store.store(f"/devices/{OWN}/{device}/namespaces", list(NAMESPACES))
    await store.store_bytes(f"/devices/{OWN}/{device}/identity_key", bytes(range(32)))
    for ns in NAMESPACES:
        await store.store(f"/{ns}/x3dh", {"signed_pre_key": {"timestamp": stamp}})
    store.close()


async def test_check_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "omemo" / f"{OWN}.sqlite3"
    await make_store(path)
    assert read_check_file(path, OWN, NAMESPACES) is None  # none yet
    values = refresh_check_file(path, OWN, NAMESPACES)
    assert values == (1234, bytes(range(32)), [1_000, 1_000])
    assert check_file_path(path).stat().st_mode & 0o777 == 0o600
    assert read_check_file(path, OWN, NAMESPACES) == values
    assert read_check_file(path, OWN, (TWOMEMO, OLDMEMO)) == values  # times follow the order
    assert read_check_file(path, OWN, (OLDMEMO,)) is None  # another set of versions
    assert read_check_file(path, "bob@example.org", NAMESPACES) is None  # another account
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


async def test_a_write_to_the_store_makes_the_check_file_unused(tmp_path: Path) -> None:
    """A session of another process holding changes in the write-ahead log, then the same
    changes checkpointed into the file: the check file is not used either way."""
    path = tmp_path / "omemo" / f"{OWN}.sqlite3"
    await make_store(path)
    refresh_check_file(path, OWN, NAMESPACES)
    store = SQLiteStorage(path)  # the writer stays open: its change is in the log only
    await store.store(f"/{OLDMEMO}/x3dh", {"signed_pre_key": {"timestamp": 5}})
    assert path.with_name(path.name + "-wal").stat().st_size > 0
    assert read_check_file(path, OWN, NAMESPACES) is None
    # and nothing is written while the log holds frames
    before = check_file_path(path).read_bytes()
    assert refresh_check_file(path, OWN, NAMESPACES) == (1234, bytes(range(32)), [5, 1_000])
    assert check_file_path(path).read_bytes() == before
    store.close()  # checkpointed into the file, log removed
    assert read_check_file(path, OWN, NAMESPACES) is None
    assert refresh_check_file(path, OWN, NAMESPACES)[2] == [5, 1_000]
    assert read_check_file(path, OWN, NAMESPACES) == (1234, bytes(range(32)), [5, 1_000])


async def test_a_check_file_of_another_store_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "omemo" / f"{OWN}.sqlite3"
    await make_store(path, device=1234)
    refresh_check_file(path, OWN, NAMESPACES)
    old = check_file_path(path).read_bytes()
    for f in path.parent.iterdir():
        f.unlink()
    await make_store(path, device=4321)
    check_file_path(path).write_bytes(old)
    assert read_check_file(path, OWN, NAMESPACES) is None


async def test_a_malformed_check_file_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "omemo" / f"{OWN}.sqlite3"
    await make_store(path)
    refresh_check_file(path, OWN, NAMESPACES)
    good = json.loads(check_file_path(path).read_text())
    bad: list[object] = [
        "not json",
        [],
        {**good, "version": 2},
        {**good, "device_id": True},
        {**good, "device_id": "1234"},
        {**good, "identity_key": "AAAA"},
        {**good, "identity_key": "not base64!"},
        {**good, "signed_pre_key_times": {OLDMEMO: 1}},
        {**good, "signed_pre_key_times": {OLDMEMO: 1, TWOMEMO: "1"}},
        {**good, "store_sha256": None},
    ]
    for value in bad:
        text = value if isinstance(value, str) else json.dumps(value)
        check_file_path(path).write_text(text)
        assert read_check_file(path, OWN, NAMESPACES) is None, value
