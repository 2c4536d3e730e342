"""Files on disk for transfers: hashing, the hash cache, partial downloads kept for resuming."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, NamedTuple

import trio

from .._xmpp.jid import JID
from .types import NameTaken, TransferError

__all__ = [
    "FileKey",
    "HashCache",
    "Partial",
    "RecordError",
    "deliver",
    "find_partials",
    "sha256_file",
    "state_dir",
    "unique_name",
]

log = logging.getLogger("jet_trio.transfer")

_READ: Final = 1 << 20
SIDECAR_SUFFIX: Final = ".jet-partial.json"
_TEMP_STEM_BYTES: Final = 120  # leaves room for the random part, ".part" and the sidecar suffix
_RECORD_VERSION: Final = 2  # 1: unauthenticated, absolute paths (refused)
_MAC_CONTEXT: Final = b"jet-trio partial-download record\x00"
_KEY_NAME: Final = "partial-records.key"
_KEY_BYTES: Final = 32
_MAX_RECORD: Final = 64 * 1024
_CONTROL_IN_NAME: Final = re.compile(r"[\x00-\x1f\x7f]")


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


class FileKey(NamedTuple):
    """What identifies a file's content for the hash cache: size, modification time, inode."""

    size: int
    mtime_ns: int
    ino: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileKey:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)


class HashCache:
    """SHA-256 of files, computed in a worker thread (or while the file is sent, see
    :meth:`remember`) and remembered while the file is unchanged (same size, modification time
    and inode)."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[FileKey, bytes]] = {}

    async def identify(self, path: Path) -> tuple[Path, FileKey]:
        """The resolved path of the file and its :class:`FileKey` now."""
        path = Path(await trio.Path(path).resolve())
        return path, FileKey.of(await trio.Path(path).stat())

    def cached(self, path: Path, key: FileKey) -> bytes | None:
        """The remembered SHA-256 of the resolved ``path`` if it was computed for ``key``."""
        hit = self._cache.get(path)
        return hit[1] if hit is not None and hit[0] == key else None

    def remember(self, path: Path, key: FileKey, digest: bytes) -> None:
        """Remember the SHA-256 of the resolved ``path`` as it was at ``key`` (computed by whoever
        read the whole file, e.g. the data pump while sending it)."""
        self._cache[path] = (key, digest)

    async def sha256(self, path: Path) -> bytes:
        path, key = await self.identify(path)
        digest = self.cached(path, key)
        if digest is not None:
            return digest
        digest = await trio.to_thread.run_sync(sha256_file, path)
        self.remember(path, key, digest)
        return digest


class RecordError(TransferError):
    """A partial-download record that jet-trio did not write, or that points outside its own
    directory (not a regular file of ours, a symbolic link, a changed name)."""


def state_dir() -> Path:
    """Where jet-trio keeps state that peers must never be able to write: ``$JET_TRIO_STATE_DIR``,
    else ``$XDG_STATE_HOME/jet-trio``, by default ``~/.local/state/jet-trio``."""
    explicit = os.environ.get("JET_TRIO_STATE_DIR", "")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "jet-trio"


def _record_key() -> bytes:
    """This installation's key for authenticating partial-download records (made on first use,
    readable by the user only)."""
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / _KEY_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(_KEY_BYTES))
    key = _read_own_file(path, _KEY_BYTES + 1)
    if len(key) != _KEY_BYTES:
        raise RecordError(f"{path} is not a jet-trio record key; remove it to make a new one")
    return key


def _read_own_file(path: Path, limit: int) -> bytes:
    """The content of ``path`` (at most ``limit`` bytes), which must be a regular file owned by
    this user and not a symbolic link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise RecordError(f"{path} cannot be read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        _check_own_regular(path, os.fstat(fd))
        return f.read(limit)


def _check_own_regular(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise RecordError(f"{path} is not a regular file")
    if st.st_uid != os.getuid():
        raise RecordError(f"{path} belongs to another user")


def _plain_name(value: object, what: str) -> str:
    """A record's file name: one path component, nothing that leaves its directory."""
    if not isinstance(value, str) or value in ("", ".", "..") or "/" in value or "\\" in value:
        raise RecordError(f"the record's {what} is not a plain file name: {value!r}")
    if "\x00" in value or _CONTROL_IN_NAME.search(value):
        raise RecordError(f"the record's {what} contains control characters")
    return value


def _mac(key: bytes, fields: dict[str, object]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key, _MAC_CONTEXT + canonical.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Partial:
    """An interrupted download kept for :meth:`FileTransfer.resume`.

    ``part`` holds the bytes received so far (not yet verified: the full-file hash is checked
    when the download completes); the record (sidecar JSON file) beside it says where it comes
    from. Records are authenticated with a key of this installation kept in ``state_dir()``
    (``$XDG_STATE_HOME/jet-trio``), so a file a peer delivered cannot pass for one; they name
    ``part`` and ``dest`` relative to their own directory, and both are confined to it again
    when a record is loaded.
    """

    #: The file holding the bytes received so far.
    part: Path
    #: Where the file is to be stored once complete and verified.
    dest: Path
    #: Who sent it.
    peer: JID
    #: The file's name, as the sender gave it.
    name: str
    #: The size of the whole file, in bytes.
    size: int
    #: The SHA-256 of the whole file (hex), by which it is requested again; empty when the
    #: sender announced it for after the data (``<hash-used/>``, see :attr:`hash_known`).
    sha256: str
    #: The envelope method (namespace) the download used, ``None`` if unencrypted.
    envelope: str | None

    @property
    def sidecar(self) -> Path:
        """The record beside :attr:`part` (``.jet-partial.json``)."""
        return self.part.with_name(self.part.name + SIDECAR_SUFFIX)

    @property
    def hash_known(self) -> bool:
        """Whether the sender's hash of the file is known. It is not when the offer announced
        the hash for after the data (``<hash-used/>``) and the download broke off first: the
        download can then not be requested by hash (:meth:`FileTransfer.resume`), only
        completed when the sender offers the file again; its whole content is checked against
        the hash the sender then gives."""
        return bool(self.sha256)

    @property
    def received(self) -> int:
        """Bytes kept so far (the offset to resume from); 0 unless ``part`` is a regular file
        of ours."""
        try:
            st = os.lstat(self.part)
        except FileNotFoundError:
            return 0
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            return 0
        return min(st.st_size, self.size)

    @classmethod
    def create(
        cls, dest: Path, peer: JID, name: str, size: int, sha256: str, envelope: str | None
    ) -> Partial:
        """Start a record for a download to ``dest``: a new, empty part file beside it."""
        # Absolute and normalised as mkstemp returns the temporary file's path: the two must
        # name one directory (a relative ``dest`` from ``accept(".")`` did not).
        dest = Path(os.path.abspath(dest))
        # The target name may already use the file system's whole 255 bytes: shorten the part
        # of it that goes into the temporary name.
        stem = dest.name.encode()[:_TEMP_STEM_BYTES].decode(errors="ignore")
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".part", dir=dest.parent)
        os.close(fd)
        return cls(Path(tmp), dest, peer, name, size, sha256, envelope)

    def _fields(self) -> dict[str, object]:
        if self.part.parent != self.dest.parent:
            raise RecordError("the partial data and its destination must share a directory")
        return {
            "version": _RECORD_VERSION,
            "part": self.part.name,
            "dest": self.dest.name,
            "peer": str(self.peer),
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "envelope": self.envelope,
        }

    def save(self) -> None:
        """Write the record atomically (readable by the user only), authenticated with this
        installation's key."""
        fields = self._fields()
        data = {**fields, "mac": _mac(_record_key(), fields)}
        tmp = self.sidecar.with_name(self.sidecar.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=1))
        os.replace(tmp, self.sidecar)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Partial:
        """Read a partial download from its record (or its ``.part`` file).

        Raises ``RecordError`` (a :class:`~jet_trio.TransferError`) for a record this installation
        did not write, or one that names anything but a regular file of this user in the
        record's own directory."""
        p = Path(path)
        if not p.name.endswith(SIDECAR_SUFFIX):
            p = p.with_name(p.name + SIDECAR_SUFFIX)
        try:
            raw = _read_own_file(p, _MAX_RECORD)
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise RecordError("not a JSON object")
            mac = data.pop("mac", None)
            if data.get("version") != _RECORD_VERSION or not isinstance(mac, str):
                raise RecordError(
                    "it was not written by jet-trio on this installation (or by an older version)"
                )
            if not hmac.compare_digest(mac, _mac(_record_key(), data)):
                raise RecordError("it was not written by jet-trio on this installation")
            part_name = _plain_name(data["part"], "partial file")
            dest_name = _plain_name(data["dest"], "destination")
            if p.name != part_name + SIDECAR_SUFFIX:
                raise RecordError("it was renamed (it belongs to another partial file)")
            if not part_name.startswith(".") or not part_name.endswith(".part"):
                raise RecordError(f"{part_name!r} is not a name jet-trio gives partial files")
            size = data["size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise RecordError("the size is not a number of bytes")
            envelope = data.get("envelope")
            if envelope is not None and not isinstance(envelope, str):
                raise RecordError("the envelope is not a namespace")
            partial = cls(
                p.parent / part_name,
                p.parent / dest_name,
                JID(data["peer"]),
                str(data["name"]),
                size,
                str(data["sha256"]),
                envelope,
            )
            partial.check_confined()
            return partial
        except RecordError as exc:
            raise RecordError(f"{p} is not a resumable download: {exc}") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RecordError(f"{p} is not a resumable download: {exc}") from None

    def check_confined(self) -> None:
        """Raise ``RecordError`` (a :class:`~jet_trio.TransferError`) unless ``part`` is a
        regular file of this user (not a symbolic link) in the record's directory, and ``dest``
        is not a symbolic link."""
        directory = self.sidecar.parent
        if self.part.parent != directory or self.dest.parent != directory:
            raise RecordError("the record names files outside its own directory")
        _check_own_regular(self.part, os.lstat(self.part))
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISLNK(os.lstat(self.dest).st_mode):
                raise RecordError(f"{self.dest} is a symbolic link")

    def discard(self) -> None:
        """Remove the partial data and its sidecar."""
        for f in (self.part, self.sidecar):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()


def find_partials(directory: str | os.PathLike[str]) -> list[Partial]:
    """Interrupted downloads kept in ``directory``: those whose records jet-trio wrote and that
    name files of this directory. Anything else that looks like a record (a file a peer
    delivered, say) is skipped with a warning in the log."""
    found = []
    for p in sorted(Path(directory).glob(f".*{SIDECAR_SUFFIX}")):
        try:
            found.append(Partial.load(p))
        except RecordError as exc:
            log.warning("%s (ignored)", exc)
    return found


def lock_part(part: Path) -> int | None:
    """Hold the partial file ``part`` for one download: an open descriptor with an exclusive
    ``flock`` on it (close it to let go), or ``None`` if another download, in this process or
    another, holds it. Two offers of one file never append to one partial at once."""
    fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        _check_own_regular(part, os.fstat(fd))
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError as exc:
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            os.close(fd)
            raise
        # A file system without locks (some network ones): held by this descriptor alone.
        log.debug("cannot lock %s (%s): not locked", part, exc.strerror)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_part(part: Path, offset: int) -> BinaryIO:
    """The partial file positioned at ``offset``, anything after it cut off (a regular file of
    this user, never through a symbolic link)."""
    fd = os.open(part, os.O_RDWR | os.O_NOFOLLOW)
    try:
        _check_own_regular(part, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    f = os.fdopen(fd, "r+b")
    f.truncate(offset)
    f.seek(offset)
    return f


# -- giving a verified file its name ----------------------------------------------------------

_MAX_NAME_BYTES: Final = 255
_MAX_UNIQUE: Final = 1000
_RENAME_NOREPLACE: Final = 1
_EXT = re.compile(r"(\.[A-Za-z0-9]{1,4}){1,2}$")


def _load_renameat2() -> Callable[[int, bytes, int, bytes, int], int] | None:
    # The C library the interpreter already runs on (ctypes.util.find_library would start an
    # ``ldconfig -p`` process at every start-up: ~10 ms of CPU with the process).
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
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


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``os.umask`` can
    only be read by setting it, which races with other threads creating files)."""
    with (
        contextlib.suppress(OSError, ValueError),
        open("/proc/self/status", encoding="ascii", errors="replace") as status,
    ):
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _set_final_mode(dir_fd: int, name: str) -> None:
    """The verified file gets the mode a newly created file would have (``0666 & ~umask``),
    as files saved by scp, wget or a browser do. Until then it was 0600: nobody else reads
    unverified data."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)


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
    _set_final_mode(src_fd, part.name)
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
