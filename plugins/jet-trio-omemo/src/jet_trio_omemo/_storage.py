"""python-omemo's key/value :class:`~omemo.storage.Storage` on one SQLite file per account.

Every write is its own committed transaction (``with connection:``), so a crash leaves either the
old or the new value, never a torn one; the file uses the WAL journal. Values are JSON text.
The calls are synchronous and short (WAL commits do not fsync): they run on the trio thread, as
python-omemo's storage API is called in long sequences where a thread hop per call would cost
more than the write itself.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from omemo.storage import Just, Maybe, Nothing, Storage, StorageException
from omemo.types import JSONType

__all__ = ["SQLiteStorage"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)"


class SQLiteStorage(Storage):
    """A python-omemo storage in the SQLite file ``path`` (created with mode 0600)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            path.touch(mode=0o600)
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._transaction():
                self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise StorageException(f"cannot open the OMEMO store {path}: {exc}") from exc
        self.path = path

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    async def _load(self, key: str) -> Maybe[JSONType]:
        try:
            row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise StorageException(f"OMEMO store: cannot read {key!r}: {exc}") from exc
        if row is None:
            return Nothing()
        value: JSONType = json.loads(row[0])
        return Just(value)

    async def _store(self, key: str, value: JSONType) -> None:
        text = json.dumps(value, separators=(",", ":"))
        try:
            with self._transaction():
                self._db.execute(
                    "INSERT INTO kv (key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, text),
                )
        except sqlite3.Error as exc:
            raise StorageException(f"OMEMO store: cannot write {key!r}: {exc}") from exc

    async def _delete(self, key: str) -> None:
        try:
            with self._transaction():
                self._db.execute("DELETE FROM kv WHERE key = ?", (key,))
        except sqlite3.Error as exc:
            raise StorageException(f"OMEMO store: cannot delete {key!r}: {exc}") from exc

    def close(self) -> None:
        """Close the database (idempotent)."""
        self._db.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` if the block raised."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")
