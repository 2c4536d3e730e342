"""Ctrl-C on one side of a transfer: a real SIGINT to a real ``jet-trio`` process mid-transfer
ends the session with the Jingle reason ``cancel``, so the other side reports "cancelled"
(exit 6), not a failure."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Literal

import pytest
import trio

import jet_trio

from ._run import COMMAND, cli_env
from .conftest import LocalServer

SIZE = 64 * 1024 * 1024  # over IBB through the in-process server: many seconds to move


def _partial_size(inbox: Path) -> int:
    return sum(p.stat().st_size for p in inbox.glob(".*.part") if p.is_file())


@pytest.mark.parametrize("interrupted", ["receive", "send"])
async def test_sigint_mid_transfer_is_reported_as_cancelled_to_the_peer(
    tmp_path: Path, local_server: LocalServer, interrupted: Literal["receive", "send"]
) -> None:
    src = tmp_path / "outbox" / "big.bin"
    src.parent.mkdir()
    with src.open("wb") as f:
        f.truncate(SIZE)  # sparse: the content does not matter, only the time it takes
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    receive_args = [*COMMAND, "receive", "-o", str(inbox), "--accept-stub", "--json"]
    receive_args += ["--timeout", "120"]
    send_args = [*COMMAND, "send", str(src), "--to", "bob@localhost", "--json", "--wait", "30"]
    send_args += ["--envelope", "stub", "--transport", "ibb"]
    procs: dict[str, trio.Process] = {}
    out: dict[str, bytes] = {}

    async def run(name: str, args: list[str], user: str) -> None:
        proc = await trio.lowlevel.open_process(
            args,
            env=cli_env(tmp_path, local_server.env(user)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if name == interrupted else subprocess.DEVNULL,
        )
        procs[name] = proc
        assert proc.stdout is not None
        chunks = []
        async for chunk in proc.stdout:
            chunks.append(chunk)
        out[name] = b"".join(chunks)
        await proc.wait()

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "receive", receive_args, "bob")
            nursery.start_soon(run, "send", send_args, "alice")
            # Mid-transfer: some data is on the receiver's disk, far from all of it.
            for _ in range(2000):
                if 0 < _partial_size(inbox) < SIZE // 2:
                    break
                await trio.sleep(0.05)
            else:
                pytest.fail("no data arrived")
            procs[interrupted].send_signal(signal.SIGINT)
    peer = "send" if interrupted == "receive" else "receive"
    assert procs[interrupted].returncode == 130, out[interrupted]
    assert procs[peer].returncode == 6, out[peer]
    failure = json.loads(out[peer].decode().splitlines()[-1])
    assert failure["status"] == "error" and failure["reason"] == "cancelled", failure
    assert "cancel" in failure["message"], failure
    assert "general-error" not in failure["message"], failure
    assert not (inbox / src.name).exists()
    assert os.path.getsize(src) == SIZE


async def test_sigint_while_the_offer_waits_is_a_cancel_for_the_recipient(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """Ctrl-C before the recipient answered: the offer is withdrawn with ``cancel``."""
    from .test_exit_codes_e2e import library_peer

    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(10_000))
    async with library_peer(local_server, "bob") as bob:
        proc = await trio.lowlevel.open_process(
            [*COMMAND, "send", str(src), "--to", "bob@localhost/lib", "--envelope", "none"],
            env=cli_env(tmp_path, local_server.env("alice")),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with trio.fail_after(60):
            offer = await bob.next_offer()
            proc.send_signal(signal.SIGINT)
            assert await proc.wait() == 130
            with pytest.raises(jet_trio.TransferCancelled) as info:
                await offer.accept(tmp_path)
    assert info.value.reason == "cancel", info.value
    assert not (tmp_path / "inbox").exists()
