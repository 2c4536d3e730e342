"""Where a file of a received folder goes: its directories, created safely under the output
directory.

A sender that is jet-trio attaches to each file of a folder its relative path (the
``urn:jet-trio:tree:0`` extension, see ``docs/protocol.rst``). The receiver checks it with
:class:`~jet_trio.PathSet` (sans-IO, :mod:`.paths`), then creates its directories one
component at a time, each relative to the directory opened before it (``mkdir`` and ``open``
with ``dir_fd``, ``O_NOFOLLOW | O_DIRECTORY``): a symbolic link, a file or anything but a
directory where the path needs a directory refuses the file (:class:`~jet_trio.PathBlocked`),
whoever put it there and whenever.

The last directory stays open (:class:`Placement`) until the file has its name: the partial
file, its record and the final rename all go through ``/proc/self/fd/N``, which names the
directory that descriptor holds, not whatever a path leads to later. A directory component
replaced by a symbolic link during the transfer therefore redirects nothing. Where that
is not available (no ``/proc``: not Linux), folders are not rebuilt: the file goes into the
output directory under its flat name, as for a sender that sends no paths.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from .description import _deceptive
from .paths import (
    BadCharacter,
    PathBlocked,
    PathCollision,
    PathSet,
    ReservedName,
    check_relative_path,
)

__all__ = ["Placement", "folder_components", "folders_supported", "open_beneath"]

_PROC_FD = "/proc/self/fd"
_BLOCKED = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)


@functools.cache
def folders_supported() -> bool:
    """Whether this system lets a directory be used through its descriptor as a path
    (``/proc/self/fd/N``), which rebuilding folders safely needs."""
    try:
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        return os.path.samestat(os.stat(f"{_PROC_FD}/{fd}"), os.fstat(fd))
    except OSError:
        return False
    finally:
        os.close(fd)


def folder_components(path: str, paths: PathSet | None = None) -> tuple[str, ...]:
    """The components a received relative ``path`` is stored under, or an
    :class:`~jet_trio.UnsafePath` subclass saying why it cannot be.

    ``paths`` (the paths of this batch so far) also refuses case-insensitive collisions and a
    file where the batch has a directory; the same path offered again (a file sent anew) is
    not a collision: the no-clobber rules decide. Besides :func:`~jet_trio.check_relative_path`,
    a component may not be a line or paragraph separator nor the name of a jet-trio
    partial-download record, and a first component starting with a dot is shown
    (``.ssh`` becomes ``_.ssh``), as for single files: no hidden entry appears at the top of
    the output directory (``.ssh/authorized_keys`` into a home directory)."""
    if paths is None:
        components = check_relative_path(path)
    else:
        try:
            components = paths.add(path)
        except PathCollision as exc:
            if exc.other != path:
                raise
            components = check_relative_path(path)
    for component in components:
        why = _deceptive(component)
        if why is not None:
            cls = ReservedName if "record" in why else BadCharacter
            raise cls(path, f"the component {component!r} {why}", component)
    if components[0].startswith("."):
        components = ("_" + components[0], *components[1:])
    return components


class Placement:
    """A directory under the output directory, held open while a file is received into it.

    :attr:`via` names it through its descriptor (use it for everything written there);
    :attr:`shown` is its path as created, for people and results. :meth:`close` when the
    file has its name (or was given up)."""

    def __init__(self, fd: int, shown: Path) -> None:
        self.fd = fd
        self.shown = shown
        self.via = Path(f"{_PROC_FD}/{fd}")

    def real(self, path: Path) -> Path:
        """``path`` (a name in :attr:`via`) as people see it."""
        return self.shown / path.name if path.parent == self.via else path

    def close(self) -> None:
        """Close the directory (once)."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> Placement:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_beneath(root: str | os.PathLike[str], directories: Sequence[str]) -> Placement:
    """Create ``directories`` (components, already checked) one inside the other under
    ``root`` and open the last one. Blocking: run it in a thread.

    ``root`` is opened as given (the user chose it); below it every component is created if
    missing and opened relative to its parent without following a symbolic link, so
    :class:`~jet_trio.PathBlocked` is raised for a symbolic link, a file or any other
    non-directory in the way, even one that replaced a directory this call just created."""
    base = Path(root)
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for depth, name in enumerate(directories, 1):
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o777, dir_fd=fd)
            try:
                inner = os.open(
                    name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd
                )
            except OSError as exc:
                if exc.errno not in _BLOCKED:
                    raise
                where = "/".join(directories[:depth])
                raise PathBlocked(
                    "/".join(directories),
                    f"{where} is not a directory here ({_what(fd, name)}); it is never "
                    "followed or replaced",
                    where,
                ) from None
            os.close(fd)
            fd = inner
        if not stat.S_ISDIR(os.fstat(fd).st_mode):  # O_DIRECTORY said so; be sure
            raise PathBlocked("/".join(directories), "not a directory", None)
        return Placement(fd, base.joinpath(*directories))
    except BaseException:
        os.close(fd)
        raise


def _what(dir_fd: int, name: str) -> str:
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        return "it changed meanwhile"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISREG(mode):
        return "a file"
    return "a special file"
