"""Files on disk for transfers: hashing, the hash cache, partial downloads kept for resuming."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Final

import trio

from ._jid import JID
from ._transfer_types import NameTaken, TransferError

__all__ = ["HashCache", "Partial", "deliver", "find_partials", "sha256_file", "unique_name"]

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


# -- giving a verified file its name ----------------------------------------------------------

_MAX_NAME_BYTES: Final = 255
_MAX_UNIQUE: Final = 1000
_RENAME_NOREPLACE: Final = 1
_EXT = re.compile(r"(\.[A-Za-z0-9]{1,4}){1,2}$")


def _load_renameat2() -> Callable[[int, bytes, int, bytes, int], int] | None:
    path = ctypes.util.find_library("c")
    if path is None:
        return None
    try:
        fn = ctypes.CDLL(path, use_errno=True).renameat2
    except (OSError, AttributeError):  # not Linux, or a libc older than glibc 2.28
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _load_renameat2()


def unique_name(name: str, n: int) -> str:
    """The ``n``-th alternative to the file name ``name``: ``report (1).pdf``,
    ``archive (2).tar.gz``, ``.bashrc (3)``; kept within 255 UTF-8 bytes."""
    ext = _EXT.search(name[1:])
    stem, suffix = (name[: ext.start() + 1], ext.group()) if ext else (name, "")
    tag = f" ({n}){suffix}"
    room = _MAX_NAME_BYTES - len(tag.encode())
    return stem.encode()[:room].decode(errors="ignore") + tag


def _no_clobber(src_fd: int, src: str, dst_fd: int, dst: str) -> None:
    """Rename ``src`` (in the directory ``src_fd``) to ``dst`` (in ``dst_fd``), failing with
    :class:`FileExistsError` if ``dst`` exists (a file, a directory, a symlink, a fifo...).

    ``renameat2(RENAME_NOREPLACE)`` where the kernel and file system have it; else a hard
    link (which never replaces either) and unlinking the temporary name; else, on a file system
    without hard links, an exclusively created placeholder replaced by the file."""
    if _renameat2 is not None:
        if _renameat2(src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM):
            raise OSError(err, os.strerror(err), dst)
    try:
        os.link(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # No hard links here (FAT, some network file systems): reserve the name exclusively,
        # then put the file over our own placeholder.
        fd = os.open(
            dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dst_fd
        )
        os.close(fd)
        try:
            os.replace(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(dst, dir_fd=dst_fd)
            raise
        return
    os.unlink(src, dir_fd=src_fd)


def _open_dir(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise TransferError(
            f"cannot open the directory {path} to store the received file: {exc}",
            "failed-application",
        ) from exc


def deliver(part: Path, dest: Path, *, overwrite: bool, rename: bool = False) -> Path:
    """Give the verified file ``part`` the name ``dest``; returns the path it now has.
    Blocking: run it in a thread.

    The directories are opened once and the file moved relative to them: when ``part`` is
    beside ``dest`` (as jet-trio makes it), a directory swapped for a symlink meanwhile cannot
    redirect the file elsewhere (``part`` is then not found and :class:`TransferError` is
    raised). ``overwrite=True`` replaces ``dest`` atomically (``os.replace``; never a
    directory). Otherwise ``dest`` is never replaced, whatever took the name meanwhile: with
    ``rename=True`` the first free ``name (1).ext``... is used; without, the file is kept under
    that unique name and :class:`NameTaken` is raised."""
    src_fd = _open_dir(part.parent)
    try:
        dst_fd = src_fd if dest.parent == part.parent else _open_dir(dest.parent)
        try:
            return _deliver_at(src_fd, part, dst_fd, dest, overwrite, rename)
        finally:
            if dst_fd != src_fd:
                os.close(dst_fd)
    finally:
        os.close(src_fd)


def _deliver_at(
    src_fd: int, part: Path, dst_fd: int, dest: Path, overwrite: bool, rename: bool
) -> Path:
    try:
        os.stat(part.name, dir_fd=src_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise TransferError(
            f"the received data is no longer in {part.parent} (the directory was moved or "
            "replaced during the transfer); nothing was stored",
            "failed-application",
        ) from None
    if overwrite:
        os.replace(part.name, dest.name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        return dest
    for n in range(_MAX_UNIQUE + 1):
        name = dest.name if n == 0 else unique_name(dest.name, n)
        try:
            _no_clobber(src_fd, part.name, dst_fd, name)
        except FileExistsError:
            continue
        if n == 0:
            return dest
        if rename:
            return dest.with_name(name)
        raise NameTaken(dest, dest.with_name(name))
    raise TransferError(
        f"{dest} and {_MAX_UNIQUE} alternative names are all taken; the received file "
        f"was left as {part}",
        "failed-application",
    )
