"""The SQLite storage and the narrow asyncio shim, without any network."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import omemo.session_manager
import pytest
from omemo.storage import StorageException

from jet_trio_omemo import SQLiteStorage
from jet_trio_omemo._manager import _SUPPRESS_ROTATION, _AsyncioProxy, _install_asyncio_proxy


async def test_storage_round_trip_and_persistence(tmp_path: Path) -> None:
    path = tmp_path / "omemo" / "alice@example.org.sqlite3"
    store = SQLiteStorage(path)
    await store.store("/own_device_id", 1234)
    await store.store("/devices/bob@example.org/list", [1, 2, 3])
    await store.store_bytes("/key", b"\x00\xff")
    await store.delete("/devices/bob@example.org/list")
    await store.delete("/never-stored")  # no error
    store.close()
    assert path.stat().st_mode & 0o777 == 0o600

    again = SQLiteStorage(path)  # a fresh cache: everything comes from the file
    assert (await again.load_primitive("/own_device_id", int)).from_just() == 1234
    assert (await again.load_bytes("/key")).from_just() == b"\x00\xff"
    assert (await again.load("/devices/bob@example.org/list")).is_nothing
    again.close()


async def test_storage_write_is_atomic(tmp_path: Path) -> None:
    store = SQLiteStorage(tmp_path / "s.sqlite3")
    await store.store("/a", {"x": 1})
    with pytest.raises(TypeError):  # not JSON: nothing is written, the old value stays
        await store.store("/a", {"x": object()})  # type: ignore[dict-item]
    store.close()
    db = sqlite3.connect(str(tmp_path / "s.sqlite3"))
    assert db.execute("SELECT value FROM kv WHERE key = '/a'").fetchone() == ('{"x":1}',)
    db.close()


async def test_storage_errors_are_storage_exceptions(tmp_path: Path) -> None:
    store = SQLiteStorage(tmp_path / "s.sqlite3")
    store.close()
    with pytest.raises(StorageException):
        await store._store("/a", 1)


def test_asyncio_proxy_only_swallows_inside_create() -> None:
    _install_asyncio_proxy()
    proxy = getattr(omemo.session_manager, "asyncio")  # noqa: B009
    assert isinstance(proxy, _AsyncioProxy)
    assert proxy.sleep is asyncio.sleep  # everything else is the real asyncio

    ran: list[str] = []

    async def job() -> None:
        ran.append("job")

    async def main() -> None:
        # Outside create_on (asyncio users of python-omemo): a real task.
        await proxy.ensure_future(job())
        # Inside create_on: the coroutine is closed, never run, and no warning is raised.
        token = _SUPPRESS_ROTATION.set(True)
        try:
            fut = proxy.ensure_future(job())
        finally:
            _SUPPRESS_ROTATION.reset(token)
        assert not isinstance(fut, asyncio.Future)
        assert fut.cancel() is False

    asyncio.run(main())
    assert ran == ["job"]
