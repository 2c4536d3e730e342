"""Habits of the tools people use: ``receive`` without ``-o`` stores into the current
directory (as scp, croc and wormhole do); ``jet-trio completion SHELL``."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import trio

from ._run import Ran, arun
from .conftest import LocalServer


@pytest.mark.parametrize("where", [[], ["-o", "."]], ids=["no-option", "dot"])
async def test_receive_stores_into_current_directory(
    tmp_path: Path, local_server: LocalServer, where: list[str]
) -> None:
    """Without ``-o`` (or with a relative ``-o .``) the file lands in the working directory."""
    src = tmp_path / "outbox" / "here.bin"
    src.parent.mkdir()
    src.write_bytes(os.urandom(50_000))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    results: dict[str, Ran] = {}

    async def receive() -> None:
        results["receive"] = await arun(
            ["receive", *where, "--accept-stub", "--timeout", "30", "--json"],
            tmp_path,
            local_server.env("bob"),
            cwd=cwd,
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        results["send"] = await arun(
            ["send", str(src), "--to", "bob@localhost", "--envelope", "stub", "--wait", "20"],
            tmp_path,
            local_server.env("alice"),
        )
    sent, received = results["send"], results["receive"]
    assert sent.returncode == 0, sent.stderr
    assert received.returncode == 0, received.stderr
    result = received.one_json()
    assert result["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert Path(result["path"]) == cwd / "here.bin"
    assert (cwd / "here.bin").read_bytes() == src.read_bytes()
    assert os.listdir(cwd) == ["here.bin"]


async def test_receive_checks_the_current_directory_before_login(tmp_path: Path) -> None:
    """Without ``-o`` the current directory is checked as ``-o DIR`` would be (before any
    login: no server is given here)."""
    cwd = tmp_path / "ro"
    cwd.mkdir()
    cwd.chmod(0o500)
    try:
        if os.access(cwd, os.W_OK):
            pytest.skip("running as root: the directory's mode does not stop writes")
        ran = await arun(
            ["receive", "--json"],
            tmp_path,
            {"JET_TRIO_ACCOUNT": "bob@localhost", "JET_TRIO_PASSWORD": "x"},
            cwd=cwd,
        )
    finally:
        cwd.chmod(0o700)
    assert ran.returncode == 10, ran.stderr
    failure = ran.one_json()
    assert failure["reason"] == "file"
    assert "is not writable" in failure["message"]
