"""Running ``jet-trio`` on a pseudo-terminal, as a user at a terminal would: its prompts are
read from the terminal and answered by the test."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ._run import COMMAND, cli_env

#: Runs jet-trio after making the pty (standard input) the controlling terminal of its new
#: session, so that ``getpass`` reads ``/dev/tty`` as it does for a user. (A wrapper rather
#: than ``preexec_fn``, which is unsafe in the test's threads.)
_TAKE_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


class Terminal:
    """``jet-trio args`` with a pty as standard input, output, error and controlling terminal."""

    def __init__(
        self,
        args: Sequence[str],
        tmp_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        primary, secondary = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _TAKE_TERMINAL, *COMMAND, *args],
            env=cli_env(tmp_path, {"TERM": "dumb", **(env or {})}),
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            start_new_session=True,
        )
        os.close(secondary)
        self._fd = primary
        self.text = ""  # everything the terminal showed so far
        self._pos = 0  # where the next expect() starts looking

    def _read(self, deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([self._fd], [], [], left)
        if not ready:
            return False
        try:
            data = os.read(self._fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            data = b""
        if not data:
            return False
        self.text += data.decode("utf-8", "replace").replace("\r\n", "\n")
        return True

    def expect(self, text: str, timeout: float = 60) -> str:
        """Wait until ``text`` appears after what earlier calls matched; return what came
        before it (since the last match)."""
        deadline = time.monotonic() + timeout
        while (at := self.text.find(text, self._pos)) < 0:
            if not self._read(deadline):
                raise AssertionError(f"{text!r} did not appear; the terminal showed:\n{self.text}")
        before = self.text[self._pos : at]
        self._pos = at + len(text)
        return before

    def type(self, line: str) -> None:
        os.write(self._fd, line.encode() + b"\n")

    def finish(self, timeout: float = 60) -> int:
        """Read to the end; the exit status."""
        deadline = time.monotonic() + timeout
        while self._read(deadline):
            pass
        try:
            return self.proc.wait(timeout=max(deadline - time.monotonic(), 1))
        finally:
            self.close()

    def close(self) -> None:
        """Stop the process if it still runs (after a failed expectation)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        with contextlib.suppress(OSError):  # already closed by finish()
            os.close(self._fd)

    def rest(self) -> str:
        return self.text[self._pos :]
