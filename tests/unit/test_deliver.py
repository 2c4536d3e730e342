"""deliver(): the verified file gets its name without ever replacing what took it."""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jet_trio import NameTaken, TransferError
from jet_trio._transfer import files as tf
from jet_trio._transfer.files import deliver, unique_name


@pytest.mark.parametrize(
    ("name", "n", "expected"),
    [
        ("report.pdf", 1, "report (1).pdf"),
        ("archive.tar.gz", 2, "archive (2).tar.gz"),
        ("README", 3, "README (3)"),
        (".bashrc", 1, ".bashrc (1)"),
        ("notes.2026-12-05.txt", 1, "notes.2026-12-05 (1).txt"),
        ("a.very-long-extension", 1, "a.very-long-extension (1)"),
    ],
)
def test_unique_name(name: str, n: int, expected: str) -> None:
    assert unique_name(name, n) == expected


def test_unique_name_stays_within_255_bytes() -> None:
    name = "é" * 120 + ".txt"  # 244 bytes
    alt = unique_name(name, 12)
    assert len(alt.encode()) <= 255 and alt.endswith(" (12).txt")


def _no_renameat2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tf, "_renameat2", None)


def _no_hard_links(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_renameat2(monkeypatch)

    def link(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EPERM, "hard links not supported here")

    monkeypatch.setattr(os, "link", link)


@pytest.fixture(params=["renameat2", "link", "placeholder"])
def method(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "renameat2" and tf._renameat2 is None:
        pytest.skip("no renameat2 in this libc")
    if request.param == "link":
        _no_renameat2(monkeypatch)
    if request.param == "placeholder":
        _no_hard_links(monkeypatch)
    yield request.param


def _part(d: Path, data: bytes = b"verified") -> Path:
    p = d / ".x.bin.abc.part"
    p.write_bytes(data)
    return p


def test_free_name(tmp_path: Path, method: str) -> None:
    part = _part(tmp_path)
    assert deliver(part, tmp_path / "x.bin", overwrite=False) == tmp_path / "x.bin"
    assert (tmp_path / "x.bin").read_bytes() == b"verified"
    assert not part.exists()


@pytest.mark.parametrize("kind", ["file", "dir", "symlink", "fifo"])
def test_taken_name_is_never_replaced(tmp_path: Path, method: str, kind: str) -> None:
    part = _part(tmp_path)
    dest = tmp_path / "x.bin"
    target = tmp_path / "target"
    target.write_bytes(b"target")
    if kind == "file":
        dest.write_bytes(b"precious")
    elif kind == "dir":
        dest.mkdir()
    elif kind == "symlink":
        dest.symlink_to(target)
    else:
        os.mkfifo(dest)
    (tmp_path / "x (1).bin").write_bytes(b"also taken")
    with pytest.raises(NameTaken) as info:
        deliver(part, dest, overwrite=False)
    assert info.value.path == dest and info.value.kept == tmp_path / "x (2).bin"
    assert info.value.kept.read_bytes() == b"verified"
    assert (tmp_path / "x (1).bin").read_bytes() == b"also taken"
    assert target.read_bytes() == b"target"
    if kind == "file":
        assert dest.read_bytes() == b"precious"
    assert not part.exists()


def test_rename_returns_the_free_name(tmp_path: Path, method: str) -> None:
    part = _part(tmp_path)
    (tmp_path / "x.bin").write_bytes(b"precious")
    got = deliver(part, tmp_path / "x.bin", overwrite=False, rename=True)
    assert got == tmp_path / "x (1).bin" and got.read_bytes() == b"verified"
    assert (tmp_path / "x.bin").read_bytes() == b"precious"


def test_overwrite_replaces_a_file(tmp_path: Path) -> None:
    part = _part(tmp_path)
    (tmp_path / "x.bin").write_bytes(b"old")
    assert deliver(part, tmp_path / "x.bin", overwrite=True) == tmp_path / "x.bin"
    assert (tmp_path / "x.bin").read_bytes() == b"verified"


def test_overwrite_never_replaces_a_directory(tmp_path: Path) -> None:
    part = _part(tmp_path)
    (tmp_path / "x.bin").mkdir()
    with pytest.raises(OSError):
        deliver(part, tmp_path / "x.bin", overwrite=True)
    assert (tmp_path / "x.bin").is_dir() and part.exists()


def test_part_gone_because_the_directory_was_swapped(tmp_path: Path) -> None:
    inbox, elsewhere = tmp_path / "inbox", tmp_path / "elsewhere"
    inbox.mkdir()
    elsewhere.mkdir()
    part = _part(inbox)
    inbox.rename(tmp_path / "moved")
    inbox.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(TransferError, match="no longer in"):
        deliver(part, inbox / "x.bin", overwrite=False)
    assert list(elsewhere.iterdir()) == []


def test_part_in_another_directory(tmp_path: Path, method: str) -> None:
    """A partial download kept elsewhere (another directory, same file system) still gets its
    name without clobbering."""
    (tmp_path / "records").mkdir()
    part = _part(tmp_path / "records")
    (tmp_path / "x.bin").write_bytes(b"precious")
    got = deliver(part, tmp_path / "x.bin", overwrite=False, rename=True)
    assert got == tmp_path / "x (1).bin" and got.read_bytes() == b"verified"
    assert (tmp_path / "x.bin").read_bytes() == b"precious" and not part.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_unwritable_directory_found_at_the_end(tmp_path: Path) -> None:
    part = _part(tmp_path)
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            deliver(part, tmp_path / "x.bin", overwrite=False)
    finally:
        tmp_path.chmod(0o700)
    assert part.exists() and not (tmp_path / "x.bin").exists()


def test_racing_deliveries_of_one_name(tmp_path: Path, method: str) -> None:
    """Many threads deliver different files to one name at once: every file survives, each
    under its own name."""
    parts = []
    for i in range(8):
        p = tmp_path / f".x.{i}.part"
        p.write_bytes(f"file {i}".encode())
        parts.append(p)
    got: list[Path] = []
    barrier = threading.Barrier(len(parts))

    def run(p: Path) -> None:
        barrier.wait()
        got.append(deliver(p, tmp_path / "x.bin", overwrite=False, rename=True))

    threads = [threading.Thread(target=run, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == len(parts)
    assert sorted(p.read_bytes() for p in got) == sorted(f"file {i}".encode() for i in range(8))


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """Set the process umask for the test; the old one comes back afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
@pytest.mark.parametrize("overwrite", [False, True])
def test_delivered_file_follows_the_umask(
    tmp_path: Path, umask: Callable[[int], int], mask: int, mode: int, overwrite: bool
) -> None:
    umask(mask)
    assert tf.current_umask() == mask
    part = tmp_path / ".f.txt.abc.part"
    part.write_bytes(b"data")
    part.chmod(0o600)  # as the partial file is made
    got = deliver(part, tmp_path / "f.txt", overwrite=overwrite)
    assert stat.S_IMODE(got.stat().st_mode) == mode
