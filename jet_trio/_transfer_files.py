"""Files on disk for transfers: hashing, the hash cache, partial downloads kept for resuming."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Final

import trio

from ._jid import JID
from ._transfer_types import TransferError

__all__ = ["HashCache", "Partial", "find_partials", "sha256_file"]

_READ: Final = 1 << 20
SIDECAR_SUFFIX: Final = ".jet-partial.json"
_TEMP_STEM_BYTES: Final = 120  # leaves room for the random part, ".part" and the sidecar suffix


def sha256_file(path: Path, length: int | None = None) -> bytes:
    """SHA-256 of the file (or of its first ``length`` bytes). Blocking: run it in a thread."""
    h = hashlib.sha256()
    left = length
    with path.open("rb") as f:
        while left is None or left > 0:
            chunk = f.read(_READ if left is None else min(_READ, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    if left:
        raise TransferError(f"{path} is shorter than expected", "failed-application")
    return h.digest()


class HashCache:
    """SHA-256 of files, computed in a worker thread and remembered while the file is unchanged
    (same size, modification time and inode)."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[tuple[int, int, int], bytes]] = {}

    async def sha256(self, path: Path) -> bytes:
        path = Path(await trio.Path(path).resolve())
        st = await trio.Path(path).stat()
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        hit = self._cache.get(path)
        if hit is not None and hit[0] == key:
            return hit[1]
        digest = await trio.to_thread.run_sync(sha256_file, path)
        self._cache[path] = (key, digest)
        return digest


@dataclass(frozen=True, slots=True)
class Partial:
    """An interrupted download kept for :meth:`FileTransfer.resume`.

    ``part`` holds the bytes received so far (not yet verified: the full-file hash is checked
    when the download completes); the sidecar JSON file beside it records where it comes from.
    """

    part: Path
    dest: Path
    peer: JID
    name: str
    size: int
    sha256: str
    envelope: str | None

    @property
    def sidecar(self) -> Path:
        return self.part.with_name(self.part.name + SIDECAR_SUFFIX)

    @property
    def received(self) -> int:
        """Bytes kept so far (the offset to resume from)."""
        try:
            return min(self.part.stat().st_size, self.size)
        except FileNotFoundError:
            return 0

    @classmethod
    def create(
        cls, dest: Path, peer: JID, name: str, size: int, sha256: str, envelope: str | None
    ) -> Partial:
        # The target name may already use the file system's whole 255 bytes: shorten the part
        # of it that goes into the temporary name.
        stem = dest.name.encode()[:_TEMP_STEM_BYTES].decode(errors="ignore")
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".part", dir=dest.parent)
        os.close(fd)
        return cls(Path(tmp), dest, peer, name, size, sha256, envelope)

    def save(self) -> None:
        """Write the sidecar atomically."""
        data = asdict(self)
        data.update(part=str(self.part), dest=str(self.dest), peer=str(self.peer))
        tmp = self.sidecar.with_name(self.sidecar.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.sidecar)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Partial:
        """Read a partial download from its sidecar (or its ``.part`` file)."""
        p = Path(path)
        if not p.name.endswith(SIDECAR_SUFFIX):
            p = p.with_name(p.name + SIDECAR_SUFFIX)
        try:
            data = json.loads(p.read_text())
            return cls(
                Path(data["part"]),
                Path(data["dest"]),
                JID(data["peer"]),
                str(data["name"]),
                int(data["size"]),
                str(data["sha256"]),
                data.get("envelope"),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TransferError(f"{p} is not a resumable download: {exc}") from None

    def discard(self) -> None:
        """Remove the partial data and its sidecar."""
        for f in (self.part, self.sidecar):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()


def find_partials(directory: str | os.PathLike[str]) -> list[Partial]:
    """Interrupted downloads kept in ``directory``."""
    return [Partial.load(p) for p in sorted(Path(directory).glob(f".*{SIDECAR_SUFFIX}"))]


def open_part(part: Path, offset: int) -> BinaryIO:
    """The partial file positioned at ``offset``, anything after it cut off."""
    f = part.open("r+b")
    f.truncate(offset)
    f.seek(offset)
    return f
