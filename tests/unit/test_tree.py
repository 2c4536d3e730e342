"""Walking a folder to send (jet_trio._transfer.tree): kinds, links, loops, flat names."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from jet_trio._transfer.paths import fold
from jet_trio._transfer.tree import FlatNames, TreeEntry, flat_items, walk_tree


def make_tree(root: Path) -> Path:
    top = root / "photos"
    (top / "2023" / "summer").mkdir(parents=True)
    (top / "empty").mkdir()
    (top / "a.jpg").write_bytes(b"a")
    (top / "2023" / "b c.jpg").write_bytes(b"bc")
    (top / "2023" / "summer" / "été.png").write_bytes(b"ete")
    return top


def by_path(entries: list[TreeEntry]) -> dict[str, TreeEntry]:
    return {e.relative_path: e for e in entries}


def test_walk_files_and_empty_dirs(tmp_path: Path) -> None:
    top = make_tree(tmp_path)
    entries = list(walk_tree(top))
    assert [(e.kind, e.relative_path) for e in entries] == [
        ("file", "photos/2023/b c.jpg"),
        ("file", "photos/2023/summer/été.png"),
        ("file", "photos/a.jpg"),
        ("empty-dir", "photos/empty"),
    ]
    found = by_path(entries)
    assert found["photos/2023/b c.jpg"].size == 2
    assert found["photos/2023/b c.jpg"].path == top / "2023" / "b c.jpg"


def test_walk_trailing_slash_and_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    top = make_tree(tmp_path)
    assert {e.relative[0] for e in walk_tree(str(top) + "/")} == {"photos"}
    monkeypatch.chdir(top)
    assert {e.relative[0] for e in walk_tree(".")} == {"photos"}


def test_empty_root(tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    assert [(e.kind, e.relative_path) for e in walk_tree(tmp_path / "nothing")] == [
        ("empty-dir", "nothing")
    ]


def test_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        list(walk_tree(tmp_path / "f"))


def test_symlinks_not_followed_by_default(tmp_path: Path) -> None:
    top = make_tree(tmp_path)
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"secret")
    (top / "link.txt").symlink_to(outside)
    (top / "dirlink").symlink_to(tmp_path)
    (top / "broken").symlink_to(tmp_path / "missing")
    found = by_path(list(walk_tree(top)))
    for name in ("link.txt", "dirlink", "broken"):
        entry = found[f"photos/{name}"]
        assert entry.kind == "skipped" and "symbolic link" in entry.note
    assert not any(e.kind == "file" and "secret" in e.relative_path for e in found.values())


def test_symlinks_followed_on_request(tmp_path: Path) -> None:
    top = make_tree(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_bytes(b"x")
    (top / "link.txt").symlink_to(top / "a.jpg")
    (top / "other").symlink_to(other)
    (top / "broken").symlink_to(tmp_path / "missing")
    (top / "2023" / "loop").symlink_to(top)  # back up into the folder
    found = by_path(list(walk_tree(top, follow_symlinks=True)))
    assert found["photos/link.txt"].kind == "file" and found["photos/link.txt"].size == 1
    assert found["photos/other/x.txt"].kind == "file"
    assert found["photos/broken"].kind == "skipped" and "to nothing" in found["photos/broken"].note
    assert found["photos/2023/loop"].kind == "skipped" and "loop" in found["photos/2023/loop"].note
    assert not any(p.startswith("photos/2023/loop/") for p in found)


def test_special_files_skipped_with_a_note(tmp_path: Path) -> None:
    top = make_tree(tmp_path)
    os.mkfifo(top / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(top / "sock"))
        found = by_path(list(walk_tree(top)))
    finally:
        sock.close()
    assert found["photos/pipe"].kind == "skipped" and "fifo" in found["photos/pipe"].note
    assert found["photos/sock"].kind == "skipped" and "socket" in found["photos/sock"].note


def test_dev_null_is_a_device(tmp_path: Path) -> None:
    top = make_tree(tmp_path)
    (top / "null").symlink_to("/dev/null")
    found = by_path(list(walk_tree(top, follow_symlinks=True)))
    assert found["photos/null"].kind == "skipped" and "device" in found["photos/null"].note


def test_many_files_lazily_without_descriptors(tmp_path: Path) -> None:
    top = tmp_path / "many"
    for d in range(30):
        sub = top / f"d{d:02}"
        sub.mkdir(parents=True)
        for i in range(100):
            (sub / f"f{i:03}").write_bytes(b"")
    fds = Path("/proc/self/fd")
    before = len(list(fds.iterdir()))
    it = walk_tree(top)
    first = next(it)
    assert first.relative_path == "many/d00/f000"
    # One directory listed, nothing held open while the consumer holds the entry.
    assert len(list(fds.iterdir())) <= before
    rest = list(it)
    assert len(rest) + 1 == 3000
    assert len(list(fds.iterdir())) <= before


def test_flat_names_unique_and_derived(tmp_path: Path) -> None:
    top = make_tree(tmp_path)
    (top / "2023" / "A.JPG").write_bytes(b"x")
    (top / "2023__A.jpg").write_bytes(b"y")  # same flat name as 2023/A.JPG, in another case
    items = list(flat_items(walk_tree(top)))
    names = [i.offered_name for i in items]
    assert len({fold(n) for n in names}) == len(names)
    assert "2023__b c.jpg" in names and "2023__summer__été.png" in names and "a.jpg" in names
    assert "2023__A.JPG" in names and "2023__A (2).jpg" in names
    rel = {i.relative: i.offered_name for i in items}
    assert rel["photos/2023/summer/été.png"] == "2023__summer__été.png"
    assert all("/" not in n for n in names)


def test_flat_names_keep_root_and_shared_between_folders() -> None:
    names = FlatNames()
    assert names.name_for(["a", "README"]) == "a__README"
    assert names.name_for(["readme"]) == "readme"
    assert names.name_for(["README"]) == "README (2)"
    assert names.name_for(["README"]) == "README (3)"
    with pytest.raises(ValueError):
        names.name_for([])


def test_flat_names_long_paths_keep_the_file_name() -> None:
    names = FlatNames()
    deep = ["d" * 100, "e" * 100, "f" * 100, "photo.jpg"]
    first = names.name_for(deep)
    assert len(first.encode()) <= 255 and first.endswith("__photo.jpg")
    second = names.name_for(deep)
    assert len(second.encode()) <= 255 and second.endswith(" (2).jpg")
    assert fold(first) != fold(second)
    wide = names.name_for(["é" * 200, "ü.txt"])
    assert len(wide.encode()) <= 255 and wide.endswith("ü.txt")
