"""-q, -v, -vv/--debug: how much the tool says on standard error."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ._run import arun, run
from .conftest import LocalServer

HAVE_OMEMO = importlib.util.find_spec("jet_trio_omemo") is not None


def _demo(tmp_path: Path, *flags: str) -> tuple[int, list[str], str]:
    six = tmp_path / "six.txt"
    six.write_text("hello\n")
    envelope = "omemo" if HAVE_OMEMO else "stub"
    ran = run(["demo", "--file", str(six), "--envelope", envelope, *flags], tmp_path)
    assert ran.returncode == 0, ran.stderr
    return ran.returncode, ran.stderr.splitlines(), ran.stdout


def test_quiet_prints_the_result_only(tmp_path: Path) -> None:
    _, err, out = _demo(tmp_path, "-q")
    assert [line for line in err if "warning" not in line] == []
    assert "transfer complete" in out


def test_verbose_shows_own_steps_not_library_internals(tmp_path: Path) -> None:
    _, normal, _ = _demo(tmp_path)
    _, verbose, _ = _demo(tmp_path, "-v")
    assert not any("logged in as alice@localhost/demo using" in line for line in normal)
    assert any("logged in as alice@localhost/demo using" in line for line in verbose)
    assert any("S5B" in line for line in verbose)
    assert len(verbose) < 20, verbose
    # Every line is jet-trio's own (no logger names, no plugin library records).
    assert not any(line.startswith("jet-trio: DEBUG") for line in verbose)
    assert not any("omemo.core" in line for line in verbose)


@pytest.mark.skipif(not HAVE_OMEMO, reason="jet-trio-omemo is not installed")
@pytest.mark.parametrize("flag", ["-vv", "--debug"])
def test_very_verbose_is_debug(tmp_path: Path, flag: str) -> None:
    _, err, _ = _demo(tmp_path, flag)
    assert any("omemo.core" in line for line in err)
    assert any(line.startswith("jet-trio: DEBUG: jet_trio.") for line in err)


def test_quiet_and_verbose_conflict(tmp_path: Path) -> None:
    ran = run(["demo", "-q", "-v"], tmp_path)
    assert ran.returncode == 2
    assert "-q cannot be combined with -v" in ran.stderr


async def test_verbose_login_says_where_the_password_came_from(
    tmp_path: Path, local_server: LocalServer
) -> None:
    ran = await arun(["plugins", "-v"], tmp_path, local_server.env("alice"))
    assert ran.returncode == 0, ran.stderr
    assert "logging in as alice@localhost (password from JET_TRIO_PASSWORD)" in ran.stderr
    assert "data directory of alice@localhost: " in ran.stderr
    ran = await arun(["plugins"], tmp_path, local_server.env("alice"))
    assert "password from" not in ran.stderr
