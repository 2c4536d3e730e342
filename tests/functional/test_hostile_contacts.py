"""A contact attacking the receiver: planted partial-download state, unanswered requests, floods
of Jingle messages, ambiguous encryption, too many offers (issue: hostile contacts)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from jet_trio import find_partials
from jet_trio._ns import JET_STUB
from jet_trio._transfer_files import Partial

from .conftest import Net, make_file


def interrupted(dest: Path, src: Path, peer: object, kept: int) -> Partial:
    """A partial download of ``src`` into ``dest`` holding its first ``kept`` bytes."""
    import hashlib

    data = src.read_bytes()
    p = Partial.create(
        dest, peer, dest.name, len(data), hashlib.sha256(data).hexdigest(), JET_STUB  # type: ignore[arg-type]
    )
    p.part.write_bytes(data[:kept])
    p.save()
    return p


# -- 1. partial-download state -------------------------------------------------------------------


async def test_resume_never_replaces_an_existing_file(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    """The no-overwrite rule of receive holds for resume: a file that took the target name
    since the download was interrupted is left alone, and the partial download is kept."""
    src = make_file(tmp_path, 50_000)
    dest = dest_dir / "file.bin"
    async with net.pair() as (fa, fb):
        partial = interrupted(dest, src, fa.client.jid, 20_000)
        dest.write_bytes(b"precious")
        await fa.share(src)
        with trio.fail_after(5), pytest.raises(FileExistsError, match="already exists"):
            await fb.resume(partial.sidecar, encrypt=JET_STUB)
    assert dest.read_bytes() == b"precious"
    assert find_partials(dest_dir) == [partial]


async def test_resume_of_a_kept_partial_completes(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    """The whole file's hash gates a resumed download: a kept prefix that does not belong to
    the file (unauthenticated plaintext, say) fails it, and nothing is stored."""
    src = make_file(tmp_path, 50_000)
    dest = dest_dir / "file.bin"
    async with net.pair() as (fa, fb):
        partial = interrupted(dest, src, fa.client.jid, 20_000)
        await fa.share(src)
        with trio.fail_after(5):
            await fb.resume(partial.sidecar, encrypt=JET_STUB)
        assert dest.read_bytes() == src.read_bytes()
        assert find_partials(dest_dir) == []
        dest.unlink()
        forged = interrupted(dest, src, fa.client.jid, 20_000)
        forged.part.write_bytes(b"\0" * 20_000)
        with trio.fail_after(5), pytest.raises(Exception, match="hash"):
            await fb.resume(forged.sidecar, encrypt=JET_STUB)
    assert not dest.exists()
