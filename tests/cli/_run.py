"""Running the ``jet-trio`` console script as a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

COMMAND = [sys.executable, "-m", "jet_trio"]


def cli_env(tmp_path: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a run: no inherited JET_TRIO_* settings, state under ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JET_TRIO_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    # No configuration file of the user running the tests: each test writes its own here.
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env["COLUMNS"] = "200"
    # Both ends run on this host: offer loopback, never the host's real addresses.
    env["JET_TRIO_DIRECT_HOST"] = "127.0.0.1"
    # Never the keyring of the user running the tests (a test that needs one sets its own).
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    env.update(extra or {})
    return env


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[dict[str, Any]]:
        """Every line of standard output, parsed as JSON (each must be an object)."""
        objects = [json.loads(line) for line in self.stdout.splitlines() if line.strip()]
        assert all(isinstance(o, dict) for o in objects), self.stdout
        return objects

    def one_json(self) -> dict[str, Any]:
        objects = self.json_lines()
        assert len(objects) == 1, (self.stdout, self.stderr)
        return objects[0]


def run(
    args: Sequence[str],
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> Ran:
    """Run ``jet-trio args`` to completion (standard input closed, output captured)."""
    proc = subprocess.run(
        [*COMMAND, *args],
        env=cli_env(tmp_path, env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Ran(proc.returncode, proc.stdout, proc.stderr)


async def arun(
    args: Sequence[str],
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
    limit: float = 60,
    cwd: Path | None = None,
) -> Ran:
    """:func:`run` from a trio test (the test's own servers keep running meanwhile); ``cwd``:
    the working directory of the process (default: the test's)."""
    with trio.fail_after(limit):
        proc = await trio.run_process(
            [*COMMAND, *args],
            env=cli_env(tmp_path, env),
            cwd=cwd,
            stdin=b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return Ran(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
