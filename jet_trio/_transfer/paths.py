"""Relative paths a peer names, checked before anything is created (sans-IO).

A receiver that rebuilds a folder from the relative paths a sender attached to its files must
never let a path leave the output directory, name something the local file system treats
specially, or collide with another file of the same batch. This module decides, without touching
the file system, whether such a path is acceptable: :func:`check_relative_path` checks one path
and returns its components (Unicode NFC), :class:`PathSet` checks a whole batch (collisions,
including case-insensitive ones, and a bound on the number of entries). Every refusal is an
:class:`UnsafePath` subclass whose message says why, and whose :attr:`UnsafePath.reason` is a
stable machine-readable word.

The rules are those of the strictest common file system, so that a tree accepted here can be
stored on Linux, macOS and Windows alike:

* ``/`` is the only separator; a backslash is refused (a separator on Windows), and so is a
  leading ``/`` (absolute), a drive letter (``C:``), an empty component (``a//b``, a trailing
  ``/``), ``.`` and ``..``;
* control characters (C0, C1, DEL, NUL included), bidirectional controls, lone surrogates and
  the characters Windows forbids in names (``< > : " | ? *``) are refused;
* names Windows reserves (``CON``, ``PRN``, ``AUX``, ``NUL``, ``COM0``-``COM9``, ``LPT0``-``LPT9``,
  their superscript-digit forms, ``CONIN$``, ``CONOUT$``, with or without an extension, in any
  case) and names ending in a dot or a space are refused;
* each component is normalised to NFC (what macOS stores, and what a composed keyboard
  produces), then limited to ``max_component`` UTF-8 bytes (255: ext4, APFS) and as many UTF-16
  code units (NTFS); the whole path to ``max_total`` UTF-8 bytes and ``max_depth`` components.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from .._errors import JetError

__all__ = [
    "AbsolutePath",
    "BackslashInPath",
    "BadCharacter",
    "ComponentTooLong",
    "DotComponent",
    "DriveLetter",
    "EmptyComponent",
    "PathBlocked",
    "PathCollision",
    "PathSet",
    "PathTooDeep",
    "PathTooLong",
    "ReservedName",
    "TooManyPaths",
    "UnsafePath",
    "check_relative_path",
    "fold",
]

MAX_COMPONENT = 255
"""Bytes (UTF-8) and UTF-16 code units a component may have."""
MAX_TOTAL = 4096
"""UTF-8 bytes a whole relative path may have (``/`` separators included)."""
MAX_DEPTH = 64
"""Components a relative path may have."""


class UnsafePath(JetError, ValueError):
    """A relative path that cannot be stored safely. ``path`` is the path as given,
    ``component`` the offending part (``None``: the path as a whole), ``reason`` a stable word
    naming the rule (``absolute``, ``drive``, ``backslash``, ``empty``, ``dot``, ``character``,
    ``reserved``, ``trailing``, ``component-length``, ``total-length``, ``depth``,
    ``collision``, ``too-many``, ``blocked``)."""

    reason = "unsafe"

    def __init__(self, path: str, why: str, component: str | None = None) -> None:
        super().__init__(f"unsafe path {path!r}: {why}")
        self.path = path
        self.component = component
        self.why = why


class AbsolutePath(UnsafePath):
    """The path starts at the root (``/etc/passwd``)."""

    reason = "absolute"


class DriveLetter(UnsafePath):
    """A component starts with a drive letter (``C:``), absolute or drive-relative on Windows."""

    reason = "drive"


class BackslashInPath(UnsafePath):
    """A backslash: a path separator on Windows, so ``a\\..\\..\\x`` would climb there."""

    reason = "backslash"


class EmptyComponent(UnsafePath):
    """An empty path, or an empty component (``a//b``, a trailing ``/``)."""

    reason = "empty"


class DotComponent(UnsafePath):
    """A ``.`` or ``..`` component."""

    reason = "dot"


class BadCharacter(UnsafePath):
    """NUL, a control character, a bidirectional control, a lone surrogate, or a character
    Windows forbids in names."""

    reason = "character"


class ReservedName(UnsafePath):
    """A name a common file system reserves (``CON``, ``nul.txt``, ``COM1``...), or one that
    ends in a dot or a space (Windows drops those, so two names would become one)."""

    reason = "reserved"


class ComponentTooLong(UnsafePath):
    """A component longer than the file systems allow."""

    reason = "component-length"


class PathTooLong(UnsafePath):
    """The whole path is too long."""

    reason = "total-length"


class PathTooDeep(UnsafePath):
    """The path has too many components."""

    reason = "depth"


class PathCollision(UnsafePath):
    """The path names the same file as an earlier one of the batch on a case-insensitive or
    normalising file system, or a file where the batch has a directory (or the reverse).
    ``other`` is the earlier path."""

    reason = "collision"

    def __init__(self, path: str, why: str, other: str) -> None:
        super().__init__(path, why)
        self.other = other


class PathBlocked(UnsafePath):
    """On disk, something other than a directory stands where the path needs one: a symbolic
    link (never followed), a file, a fifo... ``component`` is the path up to it."""

    reason = "blocked"


class TooManyPaths(UnsafePath):
    """The batch has more entries than allowed."""

    reason = "too-many"


# Characters Windows refuses in a name (besides the separators and controls checked apart).
_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')
# Bidirectional controls: a name could display as something else (``invoice\u202egpj.exe``).
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_DRIVE = re.compile(r"^[A-Za-z]:")
_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{dev}{n}" for dev in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"}
)


def _bad_character(component: str) -> str | None:
    """Why ``component`` has a character that cannot be stored safely, or ``None``."""
    for ch in component:
        cat = unicodedata.category(ch)
        if ch == "\0":
            return "it contains NUL"
        if cat == "Cc":
            return f"it contains the control character U+{ord(ch):04X}"
        if cat == "Cs":
            return f"it contains a lone surrogate U+{ord(ch):04X} (not valid Unicode)"
        if ch in _BIDI:
            return (
                f"it contains the bidirectional control U+{ord(ch):04X} (the name would "
                "display as something else)"
            )
        if ch in _WINDOWS_FORBIDDEN:
            return f"it contains {ch!r}, which Windows does not allow in names"
    return None


def _reserved(component: str) -> str | None:
    if component[-1] in ". ":
        return "it ends in a dot or a space, which Windows drops"
    stem = component.split(".", 1)[0].rstrip(" ").upper()
    if stem in _RESERVED:
        return f"{stem} is a device name reserved on Windows"
    return None


def _check_component(path: str, component: str, max_component: int) -> str:
    if component == "":
        raise EmptyComponent(path, "it has an empty component (a doubled or trailing /)")
    if component in (".", ".."):
        raise DotComponent(path, f"it has a {component!r} component", component)
    if (why := _bad_character(component)) is not None:
        raise BadCharacter(path, why, component)
    nfc = unicodedata.normalize("NFC", component)
    if (why := _reserved(nfc)) is not None:
        raise ReservedName(path, why, component)
    utf8 = len(nfc.encode())
    utf16 = len(nfc.encode("utf-16-le")) // 2
    if max(utf8, utf16) > max_component:
        raise ComponentTooLong(
            path,
            f"the component {nfc[:40]!r}... has {utf8} UTF-8 bytes ({utf16} UTF-16 units), "
            f"more than {max_component}",
            component,
        )
    return nfc


def check_relative_path(
    path: str,
    *,
    max_component: int = MAX_COMPONENT,
    max_total: int = MAX_TOTAL,
    max_depth: int = MAX_DEPTH,
) -> tuple[str, ...]:
    """The components of ``path`` (``/``-separated, relative), each normalised to NFC, or
    :class:`UnsafePath` (a subclass naming the rule) if it cannot be stored safely.

    Rules apply to the path as given and to its normalised form, so a name that only becomes
    reserved, or too long, once normalised is refused too.
    """
    if not isinstance(path, str):
        raise TypeError(f"a relative path is a str, not {type(path).__name__}")
    if path == "":
        raise EmptyComponent(path, "it is empty")
    if "\\" in path:
        raise BackslashInPath(path, "it contains a backslash (a path separator on Windows)")
    if path.startswith("/"):
        raise AbsolutePath(path, "it is absolute (starts with /)")
    if _DRIVE.match(path):
        raise DriveLetter(path, "it starts with a drive letter", path[:2])
    raw = path.split("/")
    if len(raw) > max_depth:
        raise PathTooDeep(path, f"it has {len(raw)} components, more than {max_depth}")
    components = tuple(_check_component(path, c, max_component) for c in raw)
    total = len("/".join(components).encode())
    if total > max_total:
        raise PathTooLong(path, f"it has {total} UTF-8 bytes, more than {max_total}")
    return components


def fold(component: str) -> str:
    """The form under which case-insensitive and normalising file systems (NTFS, APFS, HFS+,
    exFAT) consider two names the same: case folded, compatibility-normalised."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", component).casefold())


class PathSet:
    """The relative paths of one batch, checked as they arrive.

    :meth:`add` refuses a path that :func:`check_relative_path` refuses, one that names the same
    file as an earlier path once case and Unicode form are ignored (``Photo.JPG`` after
    ``photo.jpg``; ``é`` composed after decomposed), a file where an earlier path has a
    directory (``a`` after ``a/b``) or the reverse, and more than ``max_entries`` paths.
    Memory grows with the paths accepted (their folded forms and those of their directories).
    """

    def __init__(
        self,
        *,
        max_entries: int | None = None,
        max_component: int = MAX_COMPONENT,
        max_total: int = MAX_TOTAL,
        max_depth: int = MAX_DEPTH,
    ) -> None:
        self._limits = {
            "max_component": max_component,
            "max_total": max_total,
            "max_depth": max_depth,
        }
        self._max_entries = max_entries
        self._files: dict[tuple[str, ...], str] = {}  # folded path -> the path as added
        self._dirs: dict[tuple[str, ...], str] = {}  # folded directory -> a path inside it
        self._empty_dirs: set[tuple[str, ...]] = set()

    def __len__(self) -> int:
        return len(self._files) + len(self._empty_dirs)

    def add(self, path: str, *, directory: bool = False) -> tuple[str, ...]:
        """Check ``path`` (a file, or with ``directory=True`` an empty directory to create)
        against the rules and the batch so far; its NFC components. Nothing is recorded for a
        refused path."""
        components = check_relative_path(path, **self._limits)
        if self._max_entries is not None and len(self) >= self._max_entries:
            raise TooManyPaths(path, f"the batch already has {self._max_entries} entries")
        key = tuple(fold(c) for c in components)
        if directory:
            if (other := self._files.get(key)) is not None:
                raise PathCollision(path, f"{other!r} is a file of the same name", other)
        else:
            if (other := self._files.get(key)) is not None:
                why = (
                    "it was already in the batch"
                    if other == path
                    else f"it names the same file as {other!r} on case-insensitive file systems"
                )
                raise PathCollision(path, why, other)
            if (other := self._dirs.get(key)) is not None:
                raise PathCollision(path, f"it is a directory of {other!r}", other)
        for depth in range(1, len(key)):
            if (other := self._files.get(key[:depth])) is not None:
                raise PathCollision(path, f"its directory {other!r} is a file of the batch", other)
        for depth in range(1, len(key) + (1 if directory else 0)):
            self._dirs.setdefault(key[:depth], path)
        if directory:
            self._empty_dirs.add(key)
        else:
            self._files[key] = path
        return components

    def add_all(self, paths: Iterable[str]) -> list[tuple[str, ...]]:
        """:meth:`add` each path (files), stopping at the first refusal."""
        return [self.add(p) for p in paths]
