"""jet-trio contact add / remove / list through a real Prosody whose accounts start with empty
rosters, and "not a contact" told apart from "offline" before any wait."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli._run import Ran, run
from tests.integration._servers import PrivateProsody, ProsodyFactory, prosody_path_encode
from tests.integration.conftest import prosody_factory

pytestmark = pytest.mark.integration
__all__ = ["prosody_factory"]  # the fixture, imported for pytest


@pytest.fixture
def strangers(prosody_factory: ProsodyFactory) -> Iterator[PrivateProsody]:
    """A Prosody with alice, bob and carol, who are nobody's contacts."""
    server = prosody_factory()
    server.stop()
    roster_dir = server.data_dir / prosody_path_encode(server.domain) / "roster"
    for file in roster_dir.glob("*.dat"):
        file.unlink()
    server.start()
    yield server


def _env(server: PrivateProsody, user: str) -> dict[str, str]:
    info = server.info
    return {
        "JET_TRIO_ACCOUNT": info.jid(user),
        "JET_TRIO_PASSWORD": info.password(user),
        "JET_TRIO_SERVER": f"{info.host}:{info.port}",
        "JET_TRIO_CA_FILE": info.ca_file,
    }


def _jet(server: PrivateProsody, user: str, tmp_path: Path, *args: str) -> Ran:
    return run([*args], tmp_path, _env(server, user))


def _contacts(server: PrivateProsody, user: str, tmp_path: Path) -> dict[str, Any]:
    ran = _jet(server, user, tmp_path, "contact", "list", "--json")
    assert ran.returncode == 0, ran.stderr
    listed: dict[str, Any] = ran.one_json()
    return listed


def test_contacts_add_list_remove_and_send_errors(
    strangers: PrivateProsody, tmp_path: Path
) -> None:
    src = tmp_path / "a.txt"
    src.write_text("hello\n")
    # Not a contact: said at once (no 30 s wait), with the commands to run.
    started = time.monotonic()
    ran = _jet(strangers, "alice", tmp_path, "send", str(src), "--to", "bob@localhost", "--json")
    assert time.monotonic() - started < 25
    assert ran.returncode == 6, ran.stderr
    error = ran.one_json()
    assert error["reason"] == "not-subscribed"
    assert error["message"] == (
        "bob@localhost is not in your contacts, so their presence never reaches you"
    )
    assert "jet-trio contact add bob@localhost" in error["hint"]
    assert "jet-trio contact add alice@localhost" in error["hint"]
    assert "offline" not in error["message"] and "online within" not in error["message"]

    assert _contacts(strangers, "alice", tmp_path) == {
        "status": "ok",
        "contacts": [],
        "requests": [],
    }
    ran = _jet(strangers, "alice", tmp_path, "contact", "add", "bob@localhost", "--name", "Bob")
    assert ran.returncode == 0, ran.stderr
    assert "waiting for them to accept" in ran.stdout
    assert "jet-trio contact add alice@localhost" in ran.stdout

    # Asked, not answered yet: that is what the sender is told.
    ran = _jet(strangers, "alice", tmp_path, "send", str(src), "--to", "bob@localhost", "--json")
    assert ran.returncode == 6, ran.stderr
    assert ran.one_json()["message"] == "bob@localhost has not accepted your contact request yet"

    # bob sees the request, and accepts it by adding alice.
    listed = _contacts(strangers, "bob", tmp_path)
    assert listed["requests"] == ["alice@localhost"]
    ran = _jet(strangers, "bob", tmp_path, "contact", "list")
    assert "accept with jet-trio contact add alice@localhost" in ran.stdout
    ran = _jet(strangers, "bob", tmp_path, "contact", "add", "alice@localhost", "--json")
    assert ran.returncode == 0, ran.stderr
    assert ran.one_json()["they_see_us"] is True

    (alice_view,) = _contacts(strangers, "alice", tmp_path)["contacts"]
    (bob_view,) = _contacts(strangers, "bob", tmp_path)["contacts"]
    assert (alice_view["jid"], alice_view["name"]) == ("bob@localhost", "Bob")
    assert alice_view["subscription"] == "both", alice_view
    assert bob_view["subscription"] == "both", bob_view

    # Now a contact: bob being offline is said as offline.
    ran = _jet(
        strangers,
        "alice",
        tmp_path,
        "send",
        str(src),
        "--to",
        "bob@localhost",
        "--wait",
        "1",
        "--json",
    )
    assert ran.returncode == 6, ran.stderr
    assert ran.one_json()["reason"] == "peer-unavailable"
    assert ran.one_json()["message"] == "bob@localhost did not come online within 1 s"

    ran = _jet(strangers, "alice", tmp_path, "contact", "remove", "bob@localhost")
    assert ran.returncode == 0, ran.stderr
    assert _contacts(strangers, "alice", tmp_path)["contacts"] == []
    (bob_view,) = _contacts(strangers, "bob", tmp_path)["contacts"]
    assert bob_view["subscription"] == "none"
    ran = _jet(strangers, "alice", tmp_path, "contact", "remove", "bob@localhost")
    assert ran.returncode == 2
    assert "bob@localhost is not in your contacts" in ran.stderr
