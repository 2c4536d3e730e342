"""The real ``jet-trio`` command run inside a namespace of a topology, as one account."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from tests.integration._servers import ServerInfo

from ._topology import Host

__all__ = ["Peer", "Ran"]


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


class Peer:
    """The ``jet-trio`` command run inside a namespace as one account."""

    def __init__(self, host: Host, user: str, server: ServerInfo, home: Path) -> None:
        self.host = host
        self.user = user
        self.jid = server.jid(user)
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        address = f"[{server.host}]" if ":" in server.host else server.host
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / "xdg"),
            "COLUMNS": "200",
            "JET_TRIO_ACCOUNT": self.jid,
            "JET_TRIO_PASSWORD": server.password(user),
            "JET_TRIO_SERVER": f"{address}:{server.port}",
            "JET_TRIO_CA_FILE": server.ca_file,
        }

    async def run(self, args: Sequence[str], limit: float = 90) -> Ran:
        with trio.fail_after(limit):
            proc = await trio.run_process(
                self.host.command(sys.executable, "-m", "jet_trio", *args),
                env=self.env,
                stdin=b"",
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        return Ran(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
