"""Trust that guides (OMEMO, real command line, in-process server).

The policy, as Conversations and Dino apply it to messages: a transfer is encrypted to the
recipient's trusted devices; a device without a decision that the trust policy does not allow
(here: a second, abandoned device of bob's after alice verified his real one) is left out and
the sender told, with the commands that decide about it. Only when no trusted device is left
is the send refused, again naming the commands. A device used by blind trust (trust before
verification) is announced once: "new omemo device ... (trusted on first use)".
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import trio

from ._run import Ran, arun
from .conftest import LocalServer
from .test_send_receive import payload

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jet_trio_omemo") is None, reason="jet-trio-omemo is not installed"
)


async def transfer(
    tmp_path: Path, local_server: LocalServer, bob_env: dict[str, str] | None = None
) -> tuple[Ran, Ran]:
    src = payload(tmp_path, 2000)
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    results: dict[str, Ran] = {}

    async def receive() -> None:
        results["receive"] = await arun(
            ["receive", "-o", str(inbox), "--timeout", "25", "--json", "--overwrite"],
            tmp_path,
            local_server.env("bob") | (bob_env or {}),
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        results["send"] = await arun(
            ["send", str(src), "--to", "bob@localhost", "--wait", "20", "--json"],
            tmp_path,
            local_server.env("alice"),
        )
    return results["send"], results["receive"]


async def own_device(tmp_path: Path, env: dict[str, str]) -> dict[str, Any]:
    ran = await arun(["fingerprints", "--envelope", "omemo", "--json"], tmp_path, env)
    assert ran.returncode == 0, ran.stderr
    (own,) = [k for k in ran.one_json()["keys"] if k["own"]]
    assert isinstance(own, dict)
    return own


async def test_first_use_is_announced_once(tmp_path: Path, local_server: LocalServer) -> None:
    sent, received = await transfer(tmp_path, local_server)
    assert sent.returncode == 0 and received.returncode == 0, (sent.stderr, received.stderr)
    bob = await own_device(tmp_path, local_server.env("bob"))
    compact = str(bob["fingerprint"]).replace(" ", "")
    assert (
        f"new omemo device {bob['device_id']} for bob@localhost: {bob['fingerprint']} "
        "(trusted on first use)"
    ) in " ".join(sent.stderr.split())
    assert f"`jet-trio trust bob@localhost {compact}`" in sent.stderr
    assert "new omemo device" in received.stderr and "for alice@localhost" in received.stderr

    again, received = await transfer(tmp_path, local_server)
    assert again.returncode == 0 and received.returncode == 0, (again.stderr, received.stderr)
    assert "trusted on first use" not in again.stderr + received.stderr  # once per key


async def test_abandoned_device_is_left_out_not_blocking(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """bob's old data directory left a second device in his device list; alice verified his
    real one. The send goes to the real device, and alice is told about the other one."""
    old = await own_device(
        tmp_path, local_server.env("bob") | {"XDG_DATA_HOME": str(tmp_path / "old")}
    )
    real = await own_device(tmp_path, local_server.env("bob"))
    assert old["device_id"] != real["device_id"]
    ran = await arun(
        ["trust", "bob@localhost", str(real["fingerprint"]), "--json"],
        tmp_path,
        local_server.env("alice"),
    )
    assert ran.returncode == 0, ran.stderr

    sent, received = await transfer(tmp_path, local_server)
    assert sent.returncode == 0, sent.stderr  # before: exit 8, "no trust decision for: ..."
    assert received.returncode == 0, received.stderr  # the recipient sees a normal transfer
    text = " ".join(sent.stderr.split())
    compact = str(old["fingerprint"]).replace(" ", "")
    assert f"omemo device {old['device_id']} for bob@localhost" in text
    assert "LEFT OUT of this transfer" in text
    assert f"`jet-trio trust bob@localhost {compact}`" in text
    assert "--distrust" in text


async def test_refused_sender_device_says_what_to_run(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """bob distrusted alice's device: his receive refuses her transfer and says how to undo
    it; alice sees that bob's side refused it for security reasons."""
    alice = await own_device(tmp_path, local_server.env("alice"))
    ran = await arun(
        ["trust", "alice@localhost", str(alice["device_id"]), "--distrust", "--json"],
        tmp_path,
        local_server.env("bob"),
    )
    assert ran.returncode == 0, ran.stderr
    sent, received = await transfer(tmp_path, local_server)
    assert received.returncode == 8, received.stderr
    compact = str(alice["fingerprint"]).replace(" ", "")
    failure = received.json_lines()[-1]
    assert f"`jet-trio trust alice@localhost {compact}`" in failure["hint"], failure
    assert sent.returncode != 0
    assert "marked untrusted" in sent.stderr  # the reason text bob's side sent
