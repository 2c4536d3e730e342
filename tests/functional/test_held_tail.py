"""A SOCKS5 proxy that holds back the end of a stream until the sender closes its connection.

Prosody 0.12's proxy65 does this by accident (docs/protocol.rst) to senders that keep their
connection open after the last byte until ``session-terminate``, as Dino does. The test relay
here holds back the last ``hold_tail`` bytes every time (Prosody: 16 to about 8 KiB, depending
on timing), so each case is deterministic.

The receiver must get the file anyway, with the tag and the hash checked before the file gets
its name; when the end never comes, it must say so after ``stall_timeout``, name the proxy,
store nothing under the name and keep the partial for a resume.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from jet_trio import TagTimeout, TransferTimeout, find_partials
from jet_trio._xmpp.ns import JET_STUB

from .conftest import (
    Net,
    assert_not_stored_maybe_resumable,
    dino_like_sender,
    make_file,
    never_closing_sender,
    run_transfer,
)

STALL = 2.0
SIZE = 300_000
RELEASED = "ending the session so the proxy passes on the rest"

# A Dino-like sender offers the hash up front here, as jet-trio did before it hashed while sending
# (Dino sends none; the receiver ending early cannot wait for a <checksum/> that cannot come).
pytestmark = pytest.mark.usefixtures("offers_with_hash")


@pytest.mark.parametrize("encrypt", [JET_STUB, None], ids=["jet", "plain"])
@pytest.mark.parametrize("hold", [16, 4112, 8208])
async def test_dino_like_sender_through_a_proxy_that_holds_the_end(
    net: Net,
    tmp_path: Path,
    dest_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    hold: int,
    encrypt: str | None,
) -> None:
    """The end of the stream (tag, or 4 KiB and the tag, or 8 KiB and the tag) stays in the
    proxy until the sender closes, which it does only when the session has ended: the
    receiver ends it with success once the stream stopped just before its end, gets the rest,
    and verifies everything before naming the file."""
    net.relay.hold_tail = hold
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "held.bin"
    async with net.pair(direct_addresses=None, stall_timeout=STALL) as (fa, fb):
        dino_like_sender(fa, monkeypatch)
        with caplog.at_level(logging.INFO, "jet_trio.transfer"):
            out = await run_transfer(fa, fb, src, dest, encrypt=encrypt, deadline=STALL * 4)
    assert out.recv.result is not None, repr(out.recv.error)
    assert out.send.result is not None, repr(out.send.error)
    assert out.recv.result.transport == "s5b-proxy"
    assert out.recv.result.hash_verified
    assert dest.read_bytes() == src.read_bytes()
    assert RELEASED in caplog.text
    assert net.relay.payload_forwarded == SIZE + (16 if encrypt else 0)


async def test_half_closing_sender_needs_no_early_end(
    net: Net,
    tmp_path: Path,
    dest_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """jet-trio's own sender half-closes after the tag: the proxy passes the end on at once
    and the receiver never ends the session before it verified the file."""
    net.relay.hold_tail = 4112
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "half-closed.bin"
    async with net.pair(direct_addresses=None, stall_timeout=STALL) as (fa, fb):
        with caplog.at_level(logging.INFO, "jet_trio.transfer"):
            out = await run_transfer(fa, fb, src, dest, encrypt=JET_STUB, deadline=STALL * 4)
    assert out.recv.result is not None and out.recv.result.hash_verified, repr(out.recv.error)
    assert out.send.result is not None, repr(out.send.error)
    assert dest.read_bytes() == src.read_bytes()
    assert RELEASED not in caplog.text


async def test_dino_like_sender_direct_is_not_ended_early(
    net: Net,
    tmp_path: Path,
    dest_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Over a direct connection a sender that keeps it open is no reason to end the session
    before the tag came."""
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "direct.bin"
    async with net.pair(stall_timeout=STALL) as (fa, fb):
        dino_like_sender(fa, monkeypatch)
        with caplog.at_level(logging.INFO, "jet_trio.transfer"):
            out = await run_transfer(fa, fb, src, dest, encrypt=JET_STUB, deadline=STALL * 4)
    assert out.recv.result is not None and out.recv.result.hash_verified, repr(out.recv.error)
    assert out.recv.result.transport == "s5b-direct"
    assert dest.read_bytes() == src.read_bytes()
    assert RELEASED not in caplog.text


async def _receive_failing(
    net: Net, src: Path, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[BaseException, int]:
    """A Dino-like sender that also never closes its connection: the receiver's error and the
    bytes it kept (checked: nothing under the name), after which the resume completes."""
    # The sender's patches on a monkeypatch of their own: undoing them must not undo the test
    # run's other settings (the state directory that holds the partial records' key).
    sender_patch = pytest.MonkeyPatch()
    async with net.pair(direct_addresses=None, stall_timeout=STALL) as (fa, fb):
        dino_like_sender(fa, sender_patch)
        never_closing_sender(fa, sender_patch)

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
        assert_not_stored_maybe_resumable(dest, src)
        sender_patch.undo()
        await fa.share(src)
        (partial,) = find_partials(dest.parent)
        kept = partial.received
        with trio.fail_after(STALL * 3):
            result = await fb.resume(partial, encrypt=JET_STUB)
        assert result.hash_verified
        assert dest.read_bytes() == src.read_bytes()
        return failed[0], kept


@pytest.mark.parametrize("hold", [16, 4112])
async def test_sender_that_never_closes(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch, hold: int
) -> None:
    """The proxy holds the end back for good (the sender never closes, not even after the
    session ended): after ``stall_timeout`` the receiver says what is missing and names the
    proxy, not the peer; nothing is stored under the name; the partial is kept and the resume
    completes the file."""
    net.relay.hold_tail = hold
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "never.bin"
    err, kept = await _receive_failing(net, src, dest, monkeypatch)
    assert kept == SIZE + 16 - hold
    assert isinstance(err, TransferTimeout) and err.reason == "timeout", repr(err)
    text = str(err)
    assert f"the SOCKS5 proxy {net.relay.jid} (127.0.0.1:{net.relay.port})" in text, text
    assert "which did not pass on its end even after the session was ended" in text, text
    if hold == 16:
        assert isinstance(err, TagTimeout), repr(err)
        assert err.proxy is not None and str(net.relay.port) in err.proxy
        assert f"all {SIZE} bytes of the file came from" in text, text
        assert "but not the 16-byte authentication tag that follows them, for 2 s" in text
    else:
        assert not isinstance(err, TagTimeout), repr(err)
        assert "4112 bytes before the end" in text, text
