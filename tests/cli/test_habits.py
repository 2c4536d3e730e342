"""Habits of the tools people use: ``receive`` without ``-o`` stores into the current
directory (as scp, croc and wormhole do); ``jet-trio completion SHELL``."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from ._run import Ran, arun, run
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


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_script(tmp_path: Path, shell: str) -> None:
    ran = run(["completion", shell], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "jet-trio" in ran.stdout and "_JET_TRIO_COMPLETE" in ran.stdout
    # The same script as click's own mechanism prints.
    same = run([], tmp_path, {"_JET_TRIO_COMPLETE": f"{shell}_source"})
    assert same.returncode == 0, same.stderr
    assert ran.stdout.strip() == same.stdout.strip()


def test_completion_script_completes(tmp_path: Path) -> None:
    """What the bash script asks for (``bash_complete``) completes the command names."""
    ran = run(
        [],
        tmp_path,
        {"_JET_TRIO_COMPLETE": "bash_complete", "COMP_WORDS": "jet-trio compl", "COMP_CWORD": "1"},
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["plain,completion"]


def test_completion_unknown_shell_is_a_usage_error(tmp_path: Path) -> None:
    ran = run(["completion", "tcsh"], tmp_path)
    assert ran.returncode == 2
    assert "tcsh" in ran.stderr and ran.stdout == ""


def test_bash_loads_the_script(tmp_path: Path) -> None:
    """The line docs/cli.rst gives for ~/.bashrc registers the completion in a real bash."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    script = run(["completion", "bash"], tmp_path).stdout
    proc = subprocess.run(
        [bash, "--norc", "-c", 'eval "$1"; complete -p jet-trio', "bash", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "-F _jet_trio_completion jet-trio" in proc.stdout
