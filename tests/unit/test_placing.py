"""Where a received file of a folder goes (sans-IO part) and its directories (on disk)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jet_trio import PathBlocked, PathCollision, PathSet, UnsafePath
from jet_trio._transfer.placing import folder_components, folders_supported, open_beneath


def test_components_are_checked_and_a_hidden_top_is_shown() -> None:
    assert folder_components("photos/2023/a b.jpg") == ("photos", "2023", "a b.jpg")
    assert folder_components(".ssh/authorized_keys") == ("_.ssh", "authorized_keys")
    assert folder_components("top/.gitignore") == ("top", ".gitignore")  # deeper: kept
    with pytest.raises(UnsafePath) as info:
        folder_components("top/x.part.jet-partial.json")
    assert info.value.reason == "reserved"
    with pytest.raises(UnsafePath) as info:
        folder_components("top/a\u2029b")
    assert info.value.reason == "character"


def test_same_path_again_is_no_collision_but_another_case_is() -> None:
    """A file sent anew (resumed, say) names the same path again: the no-clobber rules
    decide, not the batch check; another spelling of it is a collision."""
    paths = PathSet()
    assert folder_components("a/b.txt", paths) == ("a", "b.txt")
    assert folder_components("a/b.txt", paths) == ("a", "b.txt")
    with pytest.raises(PathCollision):
        folder_components("A/B.TXT", paths)
    with pytest.raises(PathCollision):
        folder_components("a/b.txt/c", paths)


def test_open_beneath_refuses_a_file_or_fifo_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    os.mkfifo(tmp_path / "fifo")
    for name, what in (("file", "a file"), ("fifo", "a special file")):
        with pytest.raises(PathBlocked, match=what) as info:
            open_beneath(tmp_path, [name, "inner"])
        assert info.value.reason == "blocked" and info.value.component == name
    assert (tmp_path / "file").read_bytes() == b"x"


def test_open_beneath_creates_and_reuses_directories(tmp_path: Path) -> None:
    with open_beneath(tmp_path, ["a", "b"]) as first:
        assert (tmp_path / "a" / "b").is_dir() and first.shown == tmp_path / "a" / "b"
    with open_beneath(tmp_path, ["a", "b", "c"]) as second:
        (second.via / "f").write_bytes(b"y")
    assert (tmp_path / "a" / "b" / "c" / "f").read_bytes() == b"y"
    assert second.fd == -1  # closed


def test_this_system_supports_folders() -> None:
    """CI runs on Linux: folders are rebuilt there (the fallback is flat names)."""
    assert folders_supported()
