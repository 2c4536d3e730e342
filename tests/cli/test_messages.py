"""Messages that say what is true: the default cipher in --help, and the advice when the
recipient advertises none of the encryption methods tried."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import trio

import jet_trio
from jet_trio.plugin import PluginConfig, PluginManager
from tests.cli._run import arun, run
from tests.cli.conftest import LocalServer

HAVE_OMEMO = importlib.util.find_spec("jet_trio_omemo") is not None


@pytest.mark.parametrize("command", ["send", "request", "resume"])
def test_cipher_help_tells_the_omemo_exception(tmp_path: Path, command: str) -> None:
    ran = run([command, "--help"], tmp_path)
    text = " ".join(ran.stdout.split())
    assert "Default: AES-256-GCM; with legacy OMEMO to a peer that does not advertise it" in text
    assert "AES-128-GCM" in text


@pytest.mark.skipif(not HAVE_OMEMO, reason="jet-trio-omemo is not installed")
async def test_recipient_without_omemo_gets_the_openpgp_hint(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """bob runs a client whose only envelope method is the stub: the default send (OMEMO)
    finds nothing in common and says which option to try."""
    src = tmp_path / "f.txt"
    src.write_text("hello\n")
    async with jet_trio.open_client(
        "bob@localhost/other",
        local_server.accounts["bob"],
        host=local_server.server.host,
        port=local_server.server.port,
        ca_file=str(local_server.ca_file),
    ) as bob:
        plugins = PluginManager(
            PluginConfig(account=bob.jid, allow_stub_envelope=True),
            plugins=[jet_trio._plugins.stub_envelope],
            entry_points=False,
        )
        async with jet_trio.open_file_transfer(bob, plugins=plugins):
            with trio.fail_after(60):
                ran = await arun(
                    ["send", str(src), "--to", "bob@localhost/other", "--json"],
                    tmp_path,
                    local_server.env("alice"),
                )
    assert ran.returncode == 8, ran.stderr
    error = ran.one_json()
    assert error["message"].startswith(
        "bob@localhost/other advertises none of the encryption methods tried"
    )
    assert "--envelope openpgp" in error["hint"]
    assert "encrypt=None" not in ran.stderr
