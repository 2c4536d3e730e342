"""Partial-download records are jet-trio's own: a peer cannot plant, forge or redirect them.

A contact can deliver a file under any name it likes into the download directory, so a record
there is untrusted input unless jet-trio can prove it wrote it: records carry an HMAC under a
key of this installation (kept in the state directory, which no offered file can reach), name
their files relative to their own directory, and are confined to it again when loaded.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from jet_trio import JID, TransferError, find_partials
from jet_trio._transfer.files import SIDECAR_SUFFIX, Partial, open_part

PEER = JID("alice@localhost/send")
SHA = "ab" * 32


def kept(directory: Path, data: bytes = b"0123456789") -> Partial:
    p = Partial.create(directory / "file.bin", PEER, "file.bin", 100, SHA, None)
    p.part.write_bytes(data)
    p.save()
    return p


def test_a_record_made_here_loads_back(tmp_path: Path) -> None:
    p = kept(tmp_path)
    assert Partial.load(p.sidecar) == p
    assert Partial.load(p.part) == p
    assert find_partials(tmp_path) == [p]
    assert p.received == 10


def test_record_and_part_are_private(tmp_path: Path) -> None:
    p = kept(tmp_path)
    assert stat.S_IMODE(p.sidecar.stat().st_mode) == 0o600
    assert stat.S_IMODE(p.part.stat().st_mode) == 0o600


def test_the_record_names_files_relative_to_its_directory(tmp_path: Path) -> None:
    p = kept(tmp_path)
    data = json.loads(p.sidecar.read_text())
    assert data["part"] == p.part.name and data["dest"] == "file.bin"
    assert str(tmp_path) not in p.sidecar.read_text()


def planted_record(directory: Path, part: Path, dest: Path) -> Path:
    """What a contact can deliver as a file named ``.X.part.jet-partial.json``: the record
    format of jet-trio up to 0.x, naming files anywhere."""
    sidecar = directory / (".X.part" + SIDECAR_SUFFIX)
    sidecar.write_text(
        json.dumps(
            {
                "part": str(part),
                "dest": str(dest),
                "peer": str(PEER),
                "name": "x",
                "size": 10,
                "sha256": SHA,
                "envelope": None,
            }
        )
    )
    return sidecar


def test_a_planted_record_is_refused(tmp_path: Path) -> None:
    inbox, home = tmp_path / "inbox", tmp_path / "home"
    inbox.mkdir()
    home.mkdir()
    (home / ".bashrc").write_text("precious")
    (home / "authorized_keys").write_text("precious")
    sidecar = planted_record(inbox, home / "authorized_keys", home / ".bashrc")
    (inbox / ".X.part").write_bytes(b"x")
    with pytest.raises(TransferError, match="not written by"):
        Partial.load(sidecar)
    assert find_partials(inbox) == []  # and --list shows nothing of it
    assert (home / ".bashrc").read_text() == (home / "authorized_keys").read_text() == "precious"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dest", "/etc/passwd"),
        ("dest", "../outside"),
        ("part", "../.y.part"),
        ("size", 1),
        ("peer", "mallory@localhost/x"),
        ("sha256", "cd" * 32),
    ],
)
def test_an_edited_record_is_refused(tmp_path: Path, field: str, value: object) -> None:
    p = kept(tmp_path)
    data = json.loads(p.sidecar.read_text())
    data[field] = value
    p.sidecar.write_text(json.dumps(data))
    with pytest.raises(TransferError):
        Partial.load(p.sidecar)


def test_a_record_under_another_name_is_refused(tmp_path: Path) -> None:
    p = kept(tmp_path)
    copy = tmp_path / (".other.part" + SIDECAR_SUFFIX)
    copy.write_bytes(p.sidecar.read_bytes())
    (tmp_path / ".other.part").write_bytes(b"x")
    with pytest.raises(TransferError, match="renamed"):
        Partial.load(copy)


def test_a_record_of_another_installation_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = kept(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "elsewhere"))
    with pytest.raises(TransferError, match="not written by"):
        Partial.load(p.sidecar)


def test_the_key_is_private(tmp_path: Path) -> None:
    kept(tmp_path)
    key = Path(os.environ["XDG_STATE_HOME"]) / "jet-trio" / "partial-records.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_a_symlinked_part_is_refused_and_never_written(tmp_path: Path) -> None:
    p = kept(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    p.part.unlink()
    p.part.symlink_to(victim)
    with pytest.raises(TransferError, match="regular file"):
        Partial.load(p.sidecar)
    assert p.received == 0
    with pytest.raises(OSError):
        open_part(p.part, 0)
    assert victim.read_text() == "precious"


def test_a_symlinked_record_is_refused(tmp_path: Path) -> None:
    p = kept(tmp_path)
    elsewhere = tmp_path / "record.json"
    p.sidecar.rename(elsewhere)
    p.sidecar.symlink_to(elsewhere)
    with pytest.raises(TransferError):
        Partial.load(p.sidecar)


def test_a_symlinked_destination_is_refused(tmp_path: Path) -> None:
    p = kept(tmp_path)
    p.dest.symlink_to(tmp_path / "somewhere")
    with pytest.raises(TransferError, match="symbolic link"):
        Partial.load(p.sidecar)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a file to another user")
def test_a_part_of_another_user_is_refused(tmp_path: Path) -> None:
    p = kept(tmp_path)
    os.chown(p.part, 4242, 4242)
    with pytest.raises(TransferError, match="another user"):
        Partial.load(p.sidecar)
    assert p.received == 0


def test_a_damaged_record_is_skipped_when_listing(tmp_path: Path) -> None:
    good = kept(tmp_path)
    (tmp_path / (".bad.part" + SIDECAR_SUFFIX)).write_text("{not json")
    assert find_partials(tmp_path) == [good]


@pytest.mark.parametrize("relative", ["file.bin", "./file.bin", "sub/../file.bin"])
def test_a_relative_destination_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relative: str
) -> None:
    """A download into a relative directory (``accept(".")``, ``receive -o .``): the record is
    written and loads back, naming the same files (the temporary file's path is absolute)."""
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    p = Partial.create(Path(relative), PEER, "file.bin", 100, SHA, None)
    p.save()
    (loaded,) = find_partials(tmp_path)
    assert loaded.dest == tmp_path / "file.bin"
    assert loaded.part == p.part
