"""Shared test configuration (kept minimal: fixtures live next to the tests that use them)."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
from hypothesis import settings

# CI machines are slower and noisier than a developer's: no per-example deadline there.
settings.register_profile("ci", deadline=None, print_blob=True)
settings.register_profile("dev", deadline=1000)
settings.load_profile("ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "dev")


@pytest.fixture(autouse=True)
def _state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """jet-trio's state (the key of partial-download records) in a directory of the test run,
    never in the user's home; command-line runs inherit it."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-state"))


@pytest.fixture(autouse=True)
def _loopback_only_host(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process tests run on the developer's (or CI's) real host: with the default
    ``direct_addresses="auto"`` they would offer, and connect to, its real interface addresses.
    Tests must contact only loopback, so interface enumeration sees a host with only loopback
    (what ``auto`` then offers). Tests of the enumeration itself, and the network-namespace
    tests (whose peers run in namespaces of their own), opt out with ``real_interfaces``."""
    if request.node.get_closest_marker("real_interfaces") is not None:
        return
    from jet_trio._transports import netif as _netif

    def loopback_only() -> list[_netif.InterfaceAddress]:
        return [
            _netif.InterfaceAddress("lo", "127.0.0.1", socket.AF_INET, True, True),
            _netif.InterfaceAddress("lo", "::1", socket.AF_INET6, True, True),
        ]

    monkeypatch.setattr(_netif, "interface_addresses", loopback_only)


@pytest.fixture
def offers_with_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``send_file`` shares its file first, so the offer carries the SHA-256 (from the
    hash cache) instead of ``<hash-used/>``: for tests that resume an interrupted send by
    requesting the rest, which needs the hash (test_hash_while_sending.py covers the rest)."""
    from jet_trio._transfer.service import FileTransfer

    real = FileTransfer.send_file

    async def send_file(self: FileTransfer, path: Any, to: Any, **kwargs: Any) -> Any:
        await self.share(path)
        return await real(self, path, to, **kwargs)

    monkeypatch.setattr(FileTransfer, "send_file", send_file)
