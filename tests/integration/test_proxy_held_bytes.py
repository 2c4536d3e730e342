"""A JET stream through a server's SOCKS5 proxy from a sender that never half-closes.

Dino (0.4.2 to 0.5) writes the ciphertext and the GCM tag and then keeps its SOCKS5 connection
open until the receiver's ``session-terminate``. Prosody 0.12's ``mod_proxy65`` then can keep
the last bytes of the stream (the tag among them) in its own read buffer: after it paused the
sender's connection to let the receiver catch up, it resumes it by waiting for the socket to
become readable again, which never happens once the sender has written everything (see
docs/interop.rst). A receiver slower than the sender makes the relay pause.

The Dino-like sender is jet-trio's own sender with its end-of-file after the tag left out; the
slow receiver is jet-trio's receiver reading its transport in small pieces with short sleeps.
``tests/functional/test_held_tail.py`` checks the same with a test relay that always holds
back the end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from jet_trio import TagTimeout, TransferTimeout, find_partials, open_client
from jet_trio._jet.stream import EncryptingSendStream
from jet_trio._transfer.driver import Established as _Established
from jet_trio._transfer.service import FileTransfer, open_file_transfer
from jet_trio._xmpp.ns import JET_STUB

from ..functional.conftest import (
    Outcome,
    assert_not_stored_maybe_resumable,
    dino_like_sender,
    make_file,
    never_closing_sender,
    run_transfer,
)
from ._servers import ServerInfo

# Dino-like senders and resumes by request: the offer carries the hash up front, as before
# hashing while sending (Dino sends none; a receiver that ended early cannot wait for a checksum).
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offers_with_hash")]

SIZE = 1 << 20  # the size of the files that failed with Dino
STALL = 5.0


class SlowReceive(trio.abc.ReceiveStream):
    """Reads ``inner`` at most ``piece`` bytes at a time, sleeping ``pause`` s after each
    (``socket`` is the inner one's, as on the stream it stands for)."""

    def __init__(self, inner: trio.SocketStream, piece: int, pause: float) -> None:
        self.inner = inner
        self.socket = inner.socket
        self.piece = piece
        self.pause = pause

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(min(max_bytes or self.piece, self.piece))
        await trio.sleep(self.pause)
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


def slow_receiver(ft: FileTransfer, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ft`` reads its transport at about 8 MB/s, slower than any sender here."""
    original = ft._receive_into

    async def receive_into(session: Any, established: _Established, *args: Any) -> Any:
        assert isinstance(established.stream, trio.SocketStream)
        slow = SlowReceive(established.stream, 16 << 10, 0.002)
        held = dataclasses.replace(established, stream=slow)  # type: ignore[arg-type]
        return await original(session, held, *args)

    monkeypatch.setattr(ft, "_receive_into", receive_into)


@asynccontextmanager
async def proxy_pair(
    server: ServerInfo, direct_host: str | None = None
) -> AsyncIterator[tuple[FileTransfer, FileTransfer]]:
    """alice and bob with no direct candidate (unless ``direct_host``): the transfer goes
    through the server's proxy."""
    opts: dict[str, Any] = {"host": server.host, "port": server.port, "ca_file": server.ca_file}
    ft_opts: dict[str, Any] = {
        "allow_stub_envelope": True,
        "direct_addresses": None if direct_host is None else [direct_host],
        "stall_timeout": STALL,
    }
    async with (
        open_client(server.jid("alice") + "/j24-send", server.accounts["alice"], **opts) as a,
        open_client(server.jid("bob") + "/j24-recv", server.accounts["bob"], **opts) as b,
        open_file_transfer(a, **ft_opts) as fa,
        open_file_transfer(b, **ft_opts) as fb,
    ):
        with trio.fail_after(5):
            await a.wait_available(b.jid)
            await b.wait_available(a.jid)
        yield fa, fb


def assert_received(out: Outcome, src: Path, dest: Path, transport: str = "s5b-proxy") -> None:
    assert out.recv.result is not None, f"receiver failed: {out.recv.error!r}"
    assert out.send.result is not None, f"sender failed: {out.send.error!r}"
    assert out.recv.result.transport == out.send.result.transport == transport
    assert out.recv.result.hash_verified
    assert out.recv.result.wire_bytes == SIZE + 16
    assert dest.read_bytes() == src.read_bytes()
    assert out.recv.result.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()


@pytest.mark.parametrize("sender", ["dino-like", "jet-trio"])
async def test_proxy_slow_receiver(
    xmpp_server: ServerInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sender: str
) -> None:
    """Through Prosody's and ejabberd's proxy, a slow receiver gets the whole file with its tag
    verified, from a sender that keeps the connection open after the tag (Dino) and from
    jet-trio's own sender (which half-closes)."""
    src = make_file(tmp_path, SIZE)
    dest = tmp_path / "inbox" / "from-proxy.bin"
    dest.parent.mkdir()
    async with proxy_pair(xmpp_server) as (fa, fb):
        if sender == "dino-like":
            dino_like_sender(fa, monkeypatch)
        slow_receiver(fb, monkeypatch)
        out = await run_transfer(fa, fb, src, dest, encrypt=JET_STUB, deadline=STALL * 4)
    assert_received(out, src, dest)


async def test_dino_like_sender_direct(
    prosody: ServerInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same sender and slow receiver over a direct connection: nothing in between holds
    bytes back, and the session is not ended before the tag came."""
    src = make_file(tmp_path, SIZE)
    dest = tmp_path / "inbox" / "direct.bin"
    dest.parent.mkdir()
    async with proxy_pair(prosody, direct_host="127.0.0.1") as (fa, fb):
        dino_like_sender(fa, monkeypatch)
        slow_receiver(fb, monkeypatch)
        out = await run_transfer(fa, fb, src, dest, encrypt=JET_STUB, deadline=STALL * 4)
    assert_received(out, src, dest, transport="s5b-direct")


async def receive_failing(
    fa: FileTransfer, fb: FileTransfer, src: Path, dest: Path
) -> BaseException:
    """Send ``src`` from ``fa`` to ``fb``; return the receiver's error once it failed (the
    sender, which never finishes, is then cancelled)."""
    failed: list[BaseException] = []
    with trio.fail_after(STALL * 4):
        async with trio.open_nursery() as n:

            async def receive() -> None:
                offer = await fb.next_offer()
                try:
                    await offer.accept(dest)
                except Exception as exc:
                    failed.append(exc)
                n.cancel_scope.cancel()

            n.start_soon(receive)
            await fa.send_file(src, fb.client.jid, encrypt=JET_STUB)
    assert failed, "the receiver did not fail"
    return failed[0]


@pytest.mark.parametrize("direct_host", [None, "127.0.0.1"], ids=["proxy", "direct"])
async def test_tag_never_comes(
    xmpp_server: ServerInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    direct_host: str | None,
) -> None:
    """A sender that writes the whole ciphertext but never its tag and never closes: the
    receiver gives up after ``stall_timeout`` with TagTimeout saying so (and naming the proxy
    when there is one), stores nothing under the name, keeps the partial, and the resume
    completes the file. Prosody's proxy may also keep the last 4 KiB of the ciphertext from
    such a sender: then a TransferTimeout names the proxy and the bytes still missing."""
    src = make_file(tmp_path, SIZE)
    dest = tmp_path / "inbox" / "no-tag.bin"
    dest.parent.mkdir()

    async def no_tag(self: EncryptingSendStream) -> None:
        pass

    async with proxy_pair(xmpp_server, direct_host=direct_host) as (fa, fb):
        dino_like_sender(fa, monkeypatch)
        never_closing_sender(fa, monkeypatch)
        with monkeypatch.context() as patch:
            patch.setattr(EncryptingSendStream, "finish", no_tag)

            start = trio.current_time()
            err = await receive_failing(fa, fb, src, dest)
        took = trio.current_time() - start
        assert isinstance(err, TransferTimeout), repr(err)
        assert err.reason == "timeout"
        held_by_prosody = xmpp_server.kind == "prosody" and direct_host is None
        held = 0  # ciphertext bytes Prosody's proxy kept back (besides the tag never sent)
        if not isinstance(err, TagTimeout):
            assert held_by_prosody, repr(err)
            # Usually its last 4 KiB buffer (4112 bytes missing with the tag); other amounts
            # when its reads came in other sizes (seen under load: 528 and 7184). What counts:
            # the message names what is missing, and the partial holds exactly what came.
            missing = re.search(r"(\d+) bytes before the end", str(err))
            assert missing is not None, err
            held = int(missing.group(1)) - 16
            assert 0 < held < SIZE, err
        else:
            assert f"all {SIZE} bytes of the file came from" in str(err), err
            assert "but not the 16-byte authentication tag" in str(err), err
            if direct_host is None:
                assert err.proxy is not None and str(xmpp_server.proxy_port) in err.proxy
            else:
                assert err.proxy is None
        if direct_host is None:
            named = f"the SOCKS5 proxy {xmpp_server.proxy_jid}"  # ejabberd adds a resource
            assert named in str(err) and f":{xmpp_server.proxy_port})" in str(err), err
            assert "did not pass on its end even after the session was ended" in str(err), err
        else:
            assert "proxy" not in str(err), err
        assert STALL <= took <= STALL * 2.5, took
        assert_not_stored_maybe_resumable(dest, src)
        (partial,) = find_partials(dest.parent)
        assert partial.received == SIZE - held
        monkeypatch.undo()
        await fa.share(src)
        with trio.fail_after(STALL * 3):
            result = await fb.resume(partial, encrypt=JET_STUB)
        assert result.hash_verified
        assert dest.read_bytes() == src.read_bytes()
        assert not find_partials(dest.parent)
