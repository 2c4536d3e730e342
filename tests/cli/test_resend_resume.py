"""An interrupted ``jet-trio send`` is completed by running it again: real processes, a
256 MiB file, one end killed (SIGKILL) at about 60 %, the in-process server whose SOCKS5
proxy carries (and counts) every byte of the data (``--direct-host none`` on both ends)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from jet_trio._transfer.files import find_partials

from ._run import arun
from .conftest import LocalServer
from .test_share_request import Running, background

SIZE = 256 * 1024 * 1024
KILL_AT = 0.6
TAG = 16  # AES-GCM
#: Both ends offer no direct candidate: the data goes through the server's proxy, which
#: counts what it relays. Stub envelope: the encryption is real AES-256-GCM all the same.
COMMON = ["--direct-host", "none", "--json"]


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A 256 MiB file of random bytes (made once for the module) and its SHA-256."""
    path = tmp_path_factory.mktemp("resend") / "big.bin"
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(SIZE // (16 << 20)):
            block = os.urandom(16 << 20)
            digest.update(block)
            f.write(block)
    yield path, digest.hexdigest()
    path.unlink()


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "inbox"
    d.mkdir()
    yield d
    for p in d.iterdir():  # 256 MiB each: not left for pytest's kept temporary directories
        p.unlink()


def receive_args(inbox: Path, *extra: str) -> list[str]:
    return ["receive", "-o", str(inbox), "--accept-stub", "--timeout", "180", *COMMON, *extra]


def send_args(src: Path) -> list[str]:
    to = ["--to", "bob@localhost", "--envelope", "stub", "--wait", "60"]
    return ["send", str(src), *to, *COMMON]


async def part_reaches(directory: Path, size: float) -> None:
    """Until a partial download in ``directory`` holds ``size`` bytes or more."""
    with trio.fail_after(120):
        while True:  # (a file size: polled)
            if any(p.stat().st_size >= size for p in directory.glob(".*.part")):
                return
            await trio.sleep(0.02)


async def wait_exit(proc: Running, limit: float = 60) -> int:
    with trio.fail_after(limit):
        return await proc.proc.wait()


async def relay_quiet(server: LocalServer) -> int:
    """The proxy's count of relayed bytes once no relay of an earlier session is running."""
    proxy = server.server.proxy65
    assert proxy is not None
    with trio.fail_after(30):
        while True:  # (a counter of the proxy: polled)
            if not proxy.active_relays:  # type: ignore[attr-defined]
                return int(proxy.relayed_bytes)  # type: ignore[attr-defined]
            await trio.sleep(0.05)


async def send_again(
    tmp_path: Path, server: LocalServer, src: Path, inbox: Path, *receive_extra: str
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The second run: a fresh receiver, ``send`` run again. Both JSON results, and the bytes
    the proxy relayed meanwhile."""
    before = await relay_quiet(server)
    receiving = receive_args(inbox, *receive_extra)
    async with background(receiving, tmp_path, server.env("bob")) as receiver:
        ran = await arun(send_args(src), tmp_path, server.env("alice"), limit=300)
        assert ran.returncode == 0, (ran.stderr, receiver.stderr)
        with trio.fail_after(60):
            (received,) = await receiver.json_objects(1)
        assert await wait_exit(receiver) == 0, receiver.stderr
    wire = await relay_quiet(server) - before
    return ran.one_json(), received, wire


def check_kept(inbox: Path) -> int:
    """The one partial download the interrupted run left: its size, at least ``KILL_AT``."""
    assert not (inbox / "big.bin").exists()
    (partial,) = find_partials(inbox)
    assert partial.dest == inbox / "big.bin" and str(partial.peer.bare) == "alice@localhost"
    assert KILL_AT * SIZE <= partial.received < SIZE
    return partial.received


def check_resumed(sent: dict[str, Any], got: dict[str, Any], wire: int, kept: int) -> None:
    rest = SIZE - kept
    for result in (sent, got):
        assert result["status"] == "ok" and result["reused_bytes"] == kept
        assert result["wire_bytes"] == rest + TAG
        assert result["transport"] == "s5b-proxy"
    assert got["hash_verified"] is True
    # Measured at the proxy: the rest (about 40 %) and the tag, nothing of the kept part.
    assert rest + TAG <= wire <= rest + TAG + 64 * 1024, (wire, rest)
    assert wire < (1 - KILL_AT + 0.05) * SIZE


@pytest.fixture
async def first_run(
    tmp_path: Path, local_server: LocalServer, big: tuple[Path, str], inbox: Path
) -> AsyncIterator[Any]:
    """Start a receiver and a sender; yields them once the receiver's partial holds
    ``KILL_AT`` of the file (the test kills one)."""
    src, _ = big
    async with (
        background(receive_args(inbox), tmp_path, local_server.env("bob")) as receiver,
        background(send_args(src), tmp_path, local_server.env("alice")) as sender,
    ):
        try:
            await part_reaches(inbox, KILL_AT * SIZE)
        except trio.TooSlowError:
            raise AssertionError(
                f"the transfer did not reach {KILL_AT:.0%}: {receiver.stderr}\n{sender.stderr}"
            ) from None
        yield receiver, sender


async def test_receiver_killed_then_sent_again(
    tmp_path: Path,
    local_server: LocalServer,
    big: tuple[Path, str],
    inbox: Path,
    first_run: tuple[Running, Running],
) -> None:
    src, sha = big
    receiver, sender = first_run
    receiver.proc.kill()
    assert await wait_exit(receiver) == -9
    assert await wait_exit(sender) != 0, sender.stderr
    kept = check_kept(inbox)

    sent, got, wire = await send_again(tmp_path, local_server, src, inbox)
    check_resumed(sent, got, wire, kept)
    assert got["sha256"] == sha
    assert hashlib.sha256((inbox / "big.bin").read_bytes()).hexdigest() == sha
    assert sorted(p.name for p in inbox.iterdir()) == ["big.bin"]


async def test_sender_killed_then_sent_again(
    tmp_path: Path,
    local_server: LocalServer,
    big: tuple[Path, str],
    inbox: Path,
    first_run: tuple[Running, Running],
) -> None:
    src, sha = big
    receiver, sender = first_run
    sender.proc.kill()
    assert await wait_exit(sender) == -9
    # The receiver sees its stream end early, keeps what came, says how to go on, and ends
    # (it was to handle one offer).
    assert await wait_exit(receiver) != 0, receiver.stderr
    assert "sending it again completes it" in receiver.stderr
    kept = check_kept(inbox)

    sent, got, wire = await send_again(tmp_path, local_server, src, inbox)
    check_resumed(sent, got, wire, kept)
    assert hashlib.sha256((inbox / "big.bin").read_bytes()).hexdigest() == sha
    assert sorted(p.name for p in inbox.iterdir()) == ["big.bin"]


async def test_no_ranges_the_whole_file_again(
    tmp_path: Path,
    local_server: LocalServer,
    big: tuple[Path, str],
    inbox: Path,
    first_run: tuple[Running, Running],
) -> None:
    """Towards a receiver that asks for no range (``--no-resume``, as Dino and Conversations
    never do), the whole file goes again; the stale partial is removed once it is stored."""
    src, sha = big
    receiver, sender = first_run
    receiver.proc.kill()
    await wait_exit(receiver)
    assert await wait_exit(sender) != 0
    check_kept(inbox)

    sent, got, wire = await send_again(tmp_path, local_server, src, inbox, "--no-resume")
    for result in (sent, got):
        assert result["reused_bytes"] == 0 and result["wire_bytes"] == SIZE + TAG
    assert SIZE + TAG <= wire <= SIZE + TAG + 64 * 1024
    assert hashlib.sha256((inbox / "big.bin").read_bytes()).hexdigest() == sha
    assert sorted(p.name for p in inbox.iterdir()) == ["big.bin"]
