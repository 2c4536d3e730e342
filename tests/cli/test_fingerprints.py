"""``jet-trio fingerprints`` and ``trust`` with the OMEMO plugin (in-process server)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import trio

from ._run import Ran, arun, run
from .conftest import LocalServer
from .test_send_receive import payload

HAVE_OMEMO = importlib.util.find_spec("jet_trio_omemo") is not None
HAVE_OPENPGP = importlib.util.find_spec("jet_trio_openpgp") is not None
needs_omemo = pytest.mark.skipif(not HAVE_OMEMO, reason="jet-trio-omemo is not installed")
needs_openpgp = pytest.mark.skipif(not HAVE_OPENPGP, reason="jet-trio-openpgp is not installed")


@needs_omemo
async def test_omemo_fingerprints_and_trust(tmp_path: Path, local_server: LocalServer) -> None:
    omemo = ["--envelope", "omemo", "--json"]
    ran = await arun(["fingerprints", *omemo], tmp_path, local_server.env("bob"))
    assert ran.returncode == 0, ran.stderr
    listing = ran.one_json()
    assert listing["status"] == "ok" and listing["account"] == "bob@localhost"
    (bob,) = listing["keys"]
    assert bob["envelope"] == "omemo" and bob["own"] is True and bob["trust"] == "own"
    assert len(bob["fingerprint"].replace(" ", "")) == 64 and bob["device_id"] > 0

    # alice sees bob's device, undecided (trusted blindly until she verifies one).
    ran = await arun(["fingerprints", "bob@localhost", *omemo], tmp_path, local_server.env("alice"))
    assert ran.returncode == 0, ran.stderr
    alice, seen = ran.one_json()["keys"]
    assert alice["jid"] == "alice@localhost" and alice["own"] is True
    assert (seen["jid"], seen["device_id"]) == ("bob@localhost", bob["device_id"])
    assert seen["fingerprint"] == bob["fingerprint"]
    assert seen["trust"] == "undecided" and seen["own"] is False

    # Verify by fingerprint (as shown, with spaces); the decision is kept.
    ran = await arun(
        ["trust", "bob@localhost", bob["fingerprint"], "--json"],
        tmp_path,
        local_server.env("alice"),
    )
    assert ran.returncode == 0, ran.stderr
    changed = ran.one_json()
    assert changed["status"] == "ok" and changed["trust"] == "verified"
    assert changed["device_id"] == bob["device_id"]
    ran = await arun(["fingerprints", "bob@localhost"], tmp_path, local_server.env("alice"))
    assert ran.returncode == 0, ran.stderr
    assert "verified" in ran.stdout and bob["fingerprint"] in ran.stdout
    assert "OMEMO devices" in ran.stdout

    # Distrust by device id.
    ran = await arun(
        ["trust", "bob@localhost", str(bob["device_id"]), "--distrust", *omemo],
        tmp_path,
        local_server.env("alice"),
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.one_json()["trust"] == "distrusted"

    # The decision applies to transfers: alice now refuses what bob's device encrypts.
    src = payload(tmp_path)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    results: dict[str, Ran] = {}

    async def receive() -> None:
        results["receive"] = await arun(
            ["receive", "-o", str(inbox), "--timeout", "30", "--json"],
            tmp_path,
            local_server.env("alice"),
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        sent = await arun(
            ["send", str(src), "--to", "alice@localhost", "--wait", "20", "--json"],
            tmp_path,
            local_server.env("bob"),
        )
    assert sent.returncode != 0
    assert results["receive"].returncode == 8, results["receive"].stderr
    assert bob["fingerprint"] in results["receive"].stderr  # names the distrusted device
    assert list(inbox.iterdir()) == []

    # A fingerprint bob does not have.
    ran = await arun(
        ["trust", "bob@localhost", "ab" * 32, *omemo], tmp_path, local_server.env("alice")
    )
    assert ran.returncode == 2
    assert ran.one_json()["reason"] == "usage"
    assert "jet-trio fingerprints bob@localhost" in ran.stderr


@needs_openpgp
async def test_openpgp_fingerprints_and_trust(tmp_path: Path, local_server: LocalServer) -> None:
    openpgp = ["--envelope", "openpgp", "--json"]
    ran = await arun(["fingerprints", *openpgp], tmp_path, local_server.env("bob"))
    assert ran.returncode == 0, ran.stderr
    (bob,) = ran.one_json()["keys"]  # made and published on first use
    assert bob["envelope"] == "openpgp" and bob["own"] is True and bob["active"] is True
    assert bob["device_id"] is None

    ran = await arun(
        ["fingerprints", "bob@localhost", *openpgp], tmp_path, local_server.env("alice")
    )
    assert ran.returncode == 0, ran.stderr
    _, seen = ran.one_json()["keys"]
    assert seen["fingerprint"] == bob["fingerprint"] and seen["trust"] == "undecided"

    compact = bob["fingerprint"].replace(" ", "").lower()
    ran = await arun(
        ["trust", "bob@localhost", compact, *openpgp], tmp_path, local_server.env("alice")
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.one_json()["trust"] == "verified"
    ran = await arun(
        ["trust", "bob@localhost", compact, "--distrust", *openpgp],
        tmp_path,
        local_server.env("alice"),
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.one_json()["trust"] == "distrusted"


def test_fingerprints_usage(tmp_path: Path) -> None:
    env = {"JET_TRIO_ACCOUNT": "bob@localhost", "JET_TRIO_PASSWORD": "x"}
    assert run(["fingerprints", "--envelope", "stub"], tmp_path, env).returncode == 2
    assert run(["trust", "bob@localhost"], tmp_path, env).returncode == 2  # no fingerprint
    ran = run(["trust", "@@", "abcd", "--json"], tmp_path, env | {"JET_TRIO_SERVER": "127.0.0.1:1"})
    assert (ran.returncode, ran.one_json()["reason"]) == (2, "usage")
