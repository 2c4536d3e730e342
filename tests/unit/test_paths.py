"""Relative paths a peer names (jet_trio._transfer.paths): every rule, and properties."""

from __future__ import annotations

import os
import posixpath
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jet_trio._transfer import paths as P
from jet_trio._transfer.paths import PathSet, UnsafePath, check_relative_path, fold

GOOD = [
    ("a.txt", ("a.txt",)),
    ("photos/2023/beach.jpg", ("photos", "2023", "beach.jpg")),
    ("with space/and more.txt", ("with space", "and more.txt")),
    (" leading space", (" leading space",)),
    (".hidden", (".hidden",)),
    ("...x", ("...x",)),
    ("Übung/日本語/файл.txt", ("Übung", "日本語", "файл.txt")),
    ("emoji \U0001f600.png", ("emoji \U0001f600.png",)),
    ("CONSOLE.txt", ("CONSOLE.txt",)),  # CON only as a whole stem
    ("COM10", ("COM10",)),
    ("nul-ish/LPT", ("nul-ish", "LPT")),
    ("a" * 255, ("a" * 255,)),
]


@pytest.mark.parametrize(("path", "components"), GOOD)
def test_accepted(path: str, components: tuple[str, ...]) -> None:
    assert check_relative_path(path) == components


BAD: list[tuple[str, type[UnsafePath], str]] = [
    ("", P.EmptyComponent, "empty"),
    ("a//b", P.EmptyComponent, "empty"),
    ("a/", P.EmptyComponent, "empty"),
    ("/etc/passwd", P.AbsolutePath, "absolute"),
    ("/", P.AbsolutePath, "absolute"),
    ("..", P.DotComponent, "dot"),
    ("../x", P.DotComponent, "dot"),
    ("a/../../x", P.DotComponent, "dot"),
    ("a/..", P.DotComponent, "dot"),
    ("./a", P.DotComponent, "dot"),
    ("a/./b", P.DotComponent, "dot"),
    ("C:", P.DriveLetter, "drive"),
    ("c:/windows/system32", P.DriveLetter, "drive"),
    ("C:x", P.DriveLetter, "drive"),
    ("a\\b", P.BackslashInPath, "backslash"),
    ("..\\..\\x", P.BackslashInPath, "backslash"),
    ("\\\\server\\share", P.BackslashInPath, "backslash"),
    ("a\0b", P.BadCharacter, "character"),
    ("a\nb", P.BadCharacter, "character"),
    ("a\tb", P.BadCharacter, "character"),
    ("a\x1bb", P.BadCharacter, "character"),
    ("a\x7fb", P.BadCharacter, "character"),
    ("a\x85b", P.BadCharacter, "character"),  # C1
    ("invoice\u202egpj.exe", P.BadCharacter, "character"),
    ("x\u2066y", P.BadCharacter, "character"),
    ("bad\udcffname", P.BadCharacter, "character"),
    ("ab:c", P.BadCharacter, "character"),  # NTFS alternate data stream
    ("a<b", P.BadCharacter, "character"),
    ("a>b", P.BadCharacter, "character"),
    ('a"b', P.BadCharacter, "character"),
    ("a|b", P.BadCharacter, "character"),
    ("a?b", P.BadCharacter, "character"),
    ("a*b", P.BadCharacter, "character"),
    ("CON", P.ReservedName, "reserved"),
    ("con", P.ReservedName, "reserved"),
    ("dir/Nul.txt", P.ReservedName, "reserved"),
    ("aux.tar.gz", P.ReservedName, "reserved"),
    ("PRN", P.ReservedName, "reserved"),
    ("COM1", P.ReservedName, "reserved"),
    ("com9.log", P.ReservedName, "reserved"),
    ("LPT1", P.ReservedName, "reserved"),
    ("COM\u00b9", P.ReservedName, "reserved"),
    ("CONIN$", P.ReservedName, "reserved"),
    ("conout$.txt", P.ReservedName, "reserved"),
    ("NUL .txt", P.ReservedName, "reserved"),
    ("name.", P.ReservedName, "reserved"),
    ("name ", P.ReservedName, "reserved"),
    ("dir./x", P.ReservedName, "reserved"),
    ("a" * 256, P.ComponentTooLong, "component-length"),
    ("é" * 128, P.ComponentTooLong, "component-length"),  # 256 UTF-8 bytes
    ("\U0001f600" * 64, P.ComponentTooLong, "component-length"),  # 256 bytes, 128 UTF-16
    ("/".join(["a" * 200] * 21), P.PathTooLong, "total-length"),
    ("/".join(["a"] * 65), P.PathTooDeep, "depth"),
]


@pytest.mark.parametrize(("path", "kind", "reason"), BAD)
def test_refused(path: str, kind: type[UnsafePath], reason: str) -> None:
    with pytest.raises(kind) as info:
        check_relative_path(path)
    exc = info.value
    assert type(exc) is kind
    assert exc.reason == reason
    assert exc.path == path
    assert repr(path) in str(exc) and len(str(exc)) > len(repr(path)) + 20, str(exc)
    assert isinstance(exc, ValueError)


def test_limits_are_parameters() -> None:
    assert check_relative_path("abcd", max_component=4) == ("abcd",)
    with pytest.raises(P.ComponentTooLong):
        check_relative_path("abcde", max_component=4)
    with pytest.raises(P.PathTooLong):
        check_relative_path("ab/cd", max_total=4)
    with pytest.raises(P.PathTooDeep):
        check_relative_path("a/b/c", max_depth=2)


def test_normalised_to_nfc() -> None:
    decomposed = "Cafe\u0301/Re\u0301sume\u0301.txt"
    assert check_relative_path(decomposed) == ("Café", "Résumé.txt")
    assert all(unicodedata.is_normalized("NFC", c) for c in check_relative_path(decomposed))


def test_not_a_string() -> None:
    with pytest.raises(TypeError):
        check_relative_path(b"a")  # type: ignore[arg-type]


# -- a batch ------------------------------------------------------------------------------


def test_batch_accepts_distinct_paths() -> None:
    batch = PathSet()
    assert batch.add("a/b.txt") == ("a", "b.txt")
    assert batch.add("a/c.txt") == ("a", "c.txt")
    assert batch.add("a/d/e") == ("a", "d", "e")
    assert batch.add("empty", directory=True) == ("empty",)
    assert batch.add("a", directory=True) == ("a",)  # a directory the batch already has
    assert len(batch) == 5


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("photo.jpg", "photo.jpg"),
        ("photo.jpg", "Photo.JPG"),
        ("dir/x", "DIR/X"),
        ("Caf\u00e9", "Cafe\u0301"),  # composed, then decomposed
        ("Stra\u00dfe", "STRASSE"),  # case folding beyond lower()
        ("\u212bngstrom", "\u00c5ngstrom"),  # ANGSTROM SIGN vs A WITH RING
        ("a/b", "A"),  # a file where the batch has a directory
        ("a", "a/b"),  # a directory where the batch has a file
        ("a", "A/b/c"),
    ],
)
def test_batch_collisions(first: str, second: str) -> None:
    batch = PathSet()
    batch.add(first)
    with pytest.raises(P.PathCollision) as info:
        batch.add(second)
    assert info.value.other == first and info.value.reason == "collision"
    assert len(batch) == 1  # the refused path was not recorded


def test_batch_directory_over_file() -> None:
    batch = PathSet()
    batch.add("x")
    with pytest.raises(P.PathCollision):
        batch.add("X", directory=True)


def test_batch_refused_path_is_not_recorded() -> None:
    batch = PathSet()
    with pytest.raises(P.DotComponent):
        batch.add("a/../b")
    assert batch.add("a/b") == ("a", "b")


def test_batch_max_entries() -> None:
    batch = PathSet(max_entries=2)
    batch.add("a")
    batch.add("d", directory=True)
    with pytest.raises(P.TooManyPaths) as info:
        batch.add("c")
    assert info.value.reason == "too-many"


def test_batch_thousands() -> None:
    batch = PathSet()
    paths = [f"d{i % 37}/sub {i % 11}/file {i}.bin" for i in range(5000)]
    assert len(batch.add_all(paths)) == 5000
    with pytest.raises(P.PathCollision):
        batch.add("D3/SUB 3/FILE 3.BIN")


# -- properties ---------------------------------------------------------------------------

component_chars = st.characters(codec="utf-8")
components = st.text(component_chars, min_size=0, max_size=12)
any_paths = st.lists(components, min_size=1, max_size=6).map("/".join)


@given(any_paths)
def test_accepted_paths_stay_inside(path: str) -> None:
    """Whatever is accepted, joined under a root, stays under that root on POSIX and on
    Windows, has no control character, and is NFC."""
    try:
        parts = check_relative_path(path)
    except UnsafePath:
        return
    assert parts and all(p not in ("", ".", "..") for p in parts)
    for p in parts:
        assert "/" not in p and "\\" not in p and "\0" not in p and ":" not in p
        assert unicodedata.is_normalized("NFC", p)
        assert not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in p)
        assert p[-1] not in ". "
    root = "/srv/out"
    joined = posixpath.normpath(posixpath.join(root, *parts))
    assert joined.startswith(root + "/")
    if os.name == "posix":
        import ntpath

        win = ntpath.normpath(ntpath.join("C:\\out", *parts))
        assert win.startswith("C:\\out\\")


@given(any_paths)
def test_decision_is_stable(path: str) -> None:
    """An accepted path's components, joined again, are accepted as the same components."""
    try:
        parts = check_relative_path(path)
    except UnsafePath as exc:
        assert exc.reason and exc.path == path
        return
    assert check_relative_path("/".join(parts)) == parts


@given(st.lists(any_paths, max_size=20))
def test_batch_never_holds_two_equal_names(paths: list[str]) -> None:
    batch = PathSet()
    kept: list[tuple[str, ...]] = []
    for path in paths:
        try:
            kept.append(batch.add(path))
        except UnsafePath:
            continue
    folded = [tuple(fold(c) for c in p) for p in kept]
    assert len(set(folded)) == len(folded)
    for a in folded:  # no file is a directory of another
        for b in folded:
            assert a == b or b[: len(a)] != a


@given(st.text(alphabet="./\\:aA\0 ", max_size=10))
def test_tricky_alphabet(path: str) -> None:
    try:
        parts = check_relative_path(path)
    except UnsafePath:
        return
    assert ".." not in parts and "." not in parts and all(parts)
