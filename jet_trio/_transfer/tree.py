"""Folders on the sending side: walking a tree lazily, and flat names for its files.

:func:`walk_tree` yields what a folder holds, one entry at a time: regular files, empty
directories, and what is skipped with the reason (symbolic links unless followed, fifos,
sockets, devices, unreadable directories, links that loop). Each directory is listed when it
is reached (its entries sorted by name, so the order and the flat names are reproducible) and
closed at once: memory grows with the depth and the largest directory, never with the number
of files, and no file is opened.

Each file goes as its own offer under a flat name derived from its relative path
(:class:`FlatNames`: ``2023__beach.jpg`` for ``photos/2023/beach.jpg``), unique in the batch
also for case-insensitive file systems: what a peer that cannot rebuild a tree (Dino,
Conversations...) stores. A jet-trio peer also gets the relative path (the
``urn:jet-trio:tree:0`` extension, see :func:`send_files`) and rebuilds the tree.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .batch import BatchItem
from .paths import fold

__all__ = ["FLAT_SEPARATOR", "FlatNames", "TreeEntry", "flat_items", "walk_tree"]

FLAT_SEPARATOR = "__"
"""Joins the components of a relative path into a flat name."""

_MAX_NAME = 255  # UTF-8 bytes of a file name on common file systems


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """One thing found in a folder.

    ``kind`` is ``"file"`` (a regular file, or a followed link to one), ``"empty-dir"`` (a
    directory with nothing in it) or ``"skipped"`` (``note`` says why). ``relative`` holds the
    components of its path from the folder's parent (the folder's own name first), ``path``
    is where it is on disk, ``size`` the size of a file.
    """

    kind: Literal["file", "empty-dir", "skipped"]
    path: Path
    relative: tuple[str, ...]
    size: int = 0
    note: str = ""

    @property
    def relative_path(self) -> str:
        """The relative path with ``/`` between its components."""
        return "/".join(self.relative)


def _kind_of(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (fifo)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _listing(directory: Path) -> list[os.DirEntry[str]]:
    with os.scandir(directory) as it:  # closed before anything is yielded
        return sorted(it, key=lambda e: e.name)


def walk_tree(
    root: str | os.PathLike[str], *, follow_symlinks: bool = False
) -> Iterator[TreeEntry]:
    """Everything under the directory ``root``, depth first, lazily (see the module).

    Symbolic links are skipped unless ``follow_symlinks`` (then a link to a file is sent as
    that file and a link to a directory is walked, except one that leads back to a directory
    being walked: a loop). ``root`` itself is walked even if it is a link (it was named).
    Raises :class:`NotADirectoryError` if ``root`` is not a directory.
    """
    top = Path(root)
    if not top.is_dir():
        raise NotADirectoryError(f"{top} is not a directory")
    name = top.name or top.resolve().name or "root"
    top_stat = top.stat()
    # Directories being walked (device, inode), and for each its entries not yet visited.
    ancestors: list[tuple[int, int]] = [(top_stat.st_dev, top_stat.st_ino)]
    stack: list[tuple[Path, tuple[str, ...], Iterator[os.DirEntry[str]]]] = []
    try:
        entries = _listing(top)
    except OSError as exc:
        yield TreeEntry("skipped", top, (name,), note=f"cannot read the directory: {exc.strerror}")
        return
    if not entries:
        yield TreeEntry("empty-dir", top, (name,))
        return
    stack.append((top, (name,), iter(entries)))
    while stack:
        _, rel, pending = stack[-1]
        entry = next(pending, None)
        if entry is None:
            stack.pop()
            ancestors.pop()
            continue
        path = Path(entry.path)
        here = (*rel, entry.name)
        try:
            is_link = entry.is_symlink()
            if is_link and not follow_symlinks:
                yield TreeEntry(
                    "skipped", path, here, note="a symbolic link, not followed (--follow-symlinks)"
                )
                continue
            try:
                st = entry.stat(follow_symlinks=True)
            except FileNotFoundError:
                why = "a symbolic link to nothing" if is_link else "it disappeared"
                yield TreeEntry("skipped", path, here, note=why)
                continue
        except OSError as exc:
            yield TreeEntry("skipped", path, here, note=f"cannot read it: {exc.strerror}")
            continue
        if stat.S_ISDIR(st.st_mode):
            ident = (st.st_dev, st.st_ino)
            if ident in ancestors:
                yield TreeEntry(
                    "skipped", path, here, note="a symbolic link back into the folder (a loop)"
                )
                continue
            try:
                inner = _listing(path)
            except OSError as exc:
                yield TreeEntry(
                    "skipped", path, here, note=f"cannot read the directory: {exc.strerror}"
                )
                continue
            if not inner:
                yield TreeEntry("empty-dir", path, here)
                continue
            ancestors.append(ident)
            stack.append((path, here, iter(inner)))
        elif stat.S_ISREG(st.st_mode):
            yield TreeEntry("file", path, here, size=st.st_size)
        else:
            yield TreeEntry("skipped", path, here, note=_kind_of(st.st_mode))


class FlatNames:
    """Flat, unique file names for the files of a batch.

    :meth:`name_for` joins the components with ``FLAT_SEPARATOR`` (``__``), shortens a name longer
    than file systems allow (keeping its end: the file's own name), and makes it unique in the
    batch, ignoring case and Unicode form, by inserting `` (2)``, `` (3)``... before the
    extension. Memory grows with the names given (one folded string each).
    """

    def __init__(self, separator: str = FLAT_SEPARATOR) -> None:
        self._separator = separator
        self._used: set[str] = set()

    def name_for(self, components: Iterable[str]) -> str:
        """A flat name for the relative path ``components``, unique in this batch."""
        parts = [c for c in components if c]
        if not parts:
            raise ValueError("a file needs a name")
        base = _shorten(self._separator.join(parts))
        stem, dot, ext = base.rpartition(".")
        if not dot or not stem:
            stem, dot, ext = base, "", ""
        candidate, n = base, 1
        while fold(candidate) in self._used:
            n += 1
            suffix = f" ({n}){dot}{ext}"
            candidate = _shorten(stem, len(suffix.encode())) + suffix
        self._used.add(fold(candidate))
        return candidate


def _shorten(name: str, reserve: int = 0) -> str:
    """``name`` cut to fit :data:`_MAX_NAME` UTF-8 bytes with ``reserve`` to spare, losing its
    beginning (the directories) rather than its end (the file's own name)."""
    room = _MAX_NAME - reserve
    raw = name.encode()
    if len(raw) <= room:
        return name
    return raw[len(raw) - room :].decode(errors="ignore").lstrip(" _.") or "file"


def flat_items(
    entries: Iterable[TreeEntry], names: FlatNames | None = None, *, keep_root: bool = False
) -> Iterator[BatchItem]:
    """The files of ``entries`` as :class:`BatchItem` with flat unique names (``names``: share
    one :class:`FlatNames` between several folders and files of one batch). The folder's own
    name is left out of the flat name unless ``keep_root``. Entries that are not files are
    passed over: report them from the walk."""
    names = names or FlatNames()
    for entry in entries:
        if entry.kind != "file":
            continue
        parts = entry.relative if keep_root or len(entry.relative) == 1 else entry.relative[1:]
        yield BatchItem(entry.path, names.name_for(parts), entry.relative_path, entry.size)
