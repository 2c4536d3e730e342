"""Fixtures of the command-line tests: an in-process server, and the real Prosody.

The Prosody fixtures of ``tests/integration`` are reused here (imported, so pytest sees them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from jet_trio.testing import Server, make_tls, serve, serve_proxy65
from tests.integration.conftest import prosody, xmpp_ca

__all__ = ["LocalServer", "local_server", "prosody", "xmpp_ca"]


@dataclass(frozen=True)
class LocalServer:
    """An in-process server (STARTTLS, proxy65) and the settings ``jet-trio`` needs for it."""

    server: Server
    ca_file: Path
    accounts: dict[str, str]

    def env(self, user: str) -> dict[str, str]:
        return {
            "JET_TRIO_ACCOUNT": f"{user}@localhost",
            "JET_TRIO_PASSWORD": self.accounts[user],
            "JET_TRIO_SERVER": f"{self.server.host}:{self.server.port}",
            "JET_TRIO_CA_FILE": str(self.ca_file),
        }


@pytest.fixture
async def local_server(tmp_path: Path) -> AsyncIterator[LocalServer]:
    ca_file = tmp_path / "ca.pem"
    tls = make_tls("localhost", ca_file=ca_file)
    accounts = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
    async with (
        serve_proxy65() as proxy,
        serve("localhost", tls=tls.server_context, accounts=accounts, proxy65=proxy) as server,
    ):
        yield LocalServer(server, ca_file, accounts)
