"""A receiver starts an envelope session's costly part only when an offer needs it.

``jet-trio receive`` may get an offer with any installed method, so it used to start every
envelope session (OMEMO: python-omemo, x3dh, pydantic, protobuf, its store) before the first
offer. It now enters them with :meth:`EnvelopeSession.prepare`: the OMEMO plugin checks that our
published device list and bundles are in place and starts the OMEMO libraries on the first
OMEMO offer. Each check looks at the modules a real receiving process imported
(``-X importtime`` lists every import on standard error).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from .conftest import LocalServer
from .test_send_receive import payload, send_and_receive

LAST = [""]
HAVE_OMEMO = importlib.util.find_spec("jet_trio_omemo") is not None
needs_omemo = pytest.mark.skipif(not HAVE_OMEMO, reason="jet-trio-omemo is not installed")
HAVE_OPENPGP = importlib.util.find_spec("jet_trio_openpgp") is not None
needs_openpgp = pytest.mark.skipif(not HAVE_OPENPGP, reason="jet-trio-openpgp is not installed")

# What the full OMEMO session runs on (the prepared one imports none of these).
OMEMO_LIBRARIES = ("omemo", "oldmemo", "twomemo", "x3dh", "doubleratchet", "pydantic", "google")


def imported(stderr: str) -> set[str]:
    """The top-level packages and the plugins' modules a process imported (``-X importtime``)."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            plugin = name.startswith(("jet_trio_omemo", "jet_trio_openpgp"))
            names.add(name if plugin else name.split(".")[0])
    return names


async def receive_once(tmp_path: Path, server: LocalServer, envelope: str) -> set[str]:
    src = payload(tmp_path, 1000)
    sent, received = await send_and_receive(
        tmp_path,
        server,
        [str(src), "--envelope", envelope],
        ["--accept-stub", "--count", "1", "--overwrite", "--debug"],
        receive_env={"PYTHONPROFILEIMPORTTIME": "1"},
    )
    assert sent.returncode == 0, sent.stderr[-3000:]
    assert received.returncode == 0, received.stderr[-3000:]
    assert received.one_json()["status"] == "ok"
    LAST[:] = [said(received.stderr)]
    return imported(received.stderr)


def said(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if not line.startswith("import time:"))


@needs_omemo
async def test_receiver_of_a_stub_offer_imports_no_omemo_library(
    tmp_path: Path, local_server: LocalServer
) -> None:
    # The first run makes bob's OMEMO identity and publishes it (the full session, once).
    first = await receive_once(tmp_path, local_server, "stub")
    assert "omemo" in first  # the check sees imports at all
    devicelist = "eu.siacs.conversations.axolotl.devicelist"
    assert local_server.server.pep_items("bob", devicelist)
    loaded = await receive_once(tmp_path, local_server, "stub")
    assert not loaded & set(OMEMO_LIBRARIES), LAST[0]
    assert "jet_trio_omemo._prepared" in loaded  # OMEMO was prepared...
    assert "jet_trio_omemo._session" not in loaded  # ...and never started
    # the check file the full session left next to the store spares reading the store
    assert not loaded & {"sqlite3", "_sqlite3"}, LAST[0]


@needs_omemo
async def test_receiver_decrypts_an_omemo_offer_after_preparing(
    tmp_path: Path, local_server: LocalServer
) -> None:
    await receive_once(tmp_path, local_server, "stub")  # bob's identity exists and is published
    loaded = await receive_once(tmp_path, local_server, "omemo")
    assert "jet_trio_omemo._prepared" in loaded
    assert "jet_trio_omemo._session" in loaded  # started by the offer


@needs_openpgp
async def test_receiver_of_a_stub_offer_imports_no_pysequoia(
    tmp_path: Path, local_server: LocalServer
) -> None:
    # The first run makes bob's OpenPGP key and publishes it (the full service, once).
    first = await receive_once(tmp_path, local_server, "stub")
    assert "pysequoia" in first  # the check sees imports at all
    assert local_server.server.pep_items("bob", "urn:xmpp:openpgp:0:public-keys")
    loaded = await receive_once(tmp_path, local_server, "stub")
    assert "pysequoia" not in loaded, LAST[0]
    assert "jet_trio_openpgp._prepared" in loaded  # OpenPGP was checked...
    assert "jet_trio_openpgp._openpgp" not in loaded  # ...and never started


@needs_openpgp
async def test_receiver_decrypts_an_openpgp_offer_after_preparing(
    tmp_path: Path, local_server: LocalServer
) -> None:
    await receive_once(tmp_path, local_server, "stub")  # bob's key exists and is published
    loaded = await receive_once(tmp_path, local_server, "openpgp")
    assert "jet_trio_openpgp._prepared" in loaded
    assert "pysequoia" in loaded  # started by the offer


async def test_sessions_are_prepared_only_when_asked(tmp_path: Path) -> None:
    """The host enters ``prepare()`` for a command that waits for offers, ``open()`` otherwise;
    a session without a cheap form (a third-party plugin written before ``prepare``) is opened
    in full either way."""
    from contextlib import asynccontextmanager
    from typing import Any

    import jet_trio
    from jet_trio._cli import sessions as _cli_sessions
    from jet_trio._cli.output import Output
    from jet_trio._plugins.manager import PluginManager
    from jet_trio._xmpp.client import Client
    from jet_trio.plugin import EnvelopeSession

    entered: list[str] = []

    @asynccontextmanager
    async def running(how: str) -> Any:
        entered.append(how)
        yield None

    class Old(EnvelopeSession):  # no prepare(): the default opens it
        label = "old"

        def open(self) -> Any:
            return running("old: open")

    class New(Old):
        label = "new"

        def open(self) -> Any:
            return running("new: open")

        def prepare(self) -> Any:
            return running("new: prepare")

    class FakeClient(Client):  # what envelope_sessions reads of a client (weakly referenced)
        def __init__(self) -> None:
            pass

        jid = jet_trio.JID("alice@example.org/x")

    def found(self: PluginManager) -> list[tuple[str, EnvelopeSession]]:
        return [("old", Old()), ("new", New())]

    client: Any = FakeClient()
    out = Output(json_mode=False, debug=False)
    mp = pytest.MonkeyPatch()
    with mp.context() as patch:
        patch.setattr(PluginManager, "envelope_sessions", found)
        for prepare in (False, True):
            async with _cli_sessions.envelope_sessions(out, client, tmp_path, prepare=prepare):
                pass
    assert entered == ["old: open", "new: open", "old: open", "new: prepare"]
