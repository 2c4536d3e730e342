"""The jet-trio(1) manual page is generated from the command line, builds without roff
warnings, and lists every command, option and exit code."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from jet_trio._cli.errors import ExitCode
from jet_trio._cli.main import cli
from jet_trio._cli.manpage import render

PAGE = render(cli, date=datetime.date(2026, 12, 5))


def _all_commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, cmd in group.commands.items():
        found.append((prefix + name, cmd))
        if isinstance(cmd, click.Group):
            found += _all_commands(cmd, f"{prefix}{name} ")
    return found


def test_every_command_option_and_exit_code_is_in_the_page() -> None:
    for name, cmd in _all_commands(cli):
        assert f".SS jet\\-trio {name.replace('-', chr(92) + '-')} " in PAGE, name
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.hidden:
                for opt in param.opts:
                    assert f"{opt.replace('-', chr(92) + '-')}" in PAGE, (name, opt)
    for code in ExitCode:
        assert f".TP\n.B {int(code)}\n" in PAGE
    assert '.TH JET\\-TRIO 1 "2026-12-05"' in PAGE


@pytest.mark.skipif(
    shutil.which("groff") is None and os.environ.get("CI", "").lower() not in ("1", "true", "yes"),
    reason="groff is not installed (CI installs it: there the test must not skip)",
)
def test_the_page_builds_without_warnings(tmp_path: Path) -> None:
    page = tmp_path / "jet-trio.1"
    subprocess.run(
        [sys.executable, "-m", "jet_trio._cli.manpage", "-o", str(page)], check=True, timeout=60
    )
    built = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(page)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert built.returncode == 0 and built.stderr == "", built.stderr
    text = subprocess.run(
        ["groff", "-man", "-Tutf8", "-P-cbou", str(page)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "jet-trio contact add [OPTIONS] JID" in text
    assert "--save-password" in text
