"""The WebRTC data channel in the file-transfer service, in process: when it is advertised,
and what a sender does when the peer does not have it or refuses it (typed, bounded)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

import jet_trio._transfer.service
from jet_trio import TransportFailed
from jet_trio._transfer.datachannel import webrtc_available
from jet_trio._xmpp.ns import JET_STUB
from tests.integration._servers import on_ci

from .conftest import Net, make_file, run_transfer

WEBRTC = "urn:xmpp:jingle:transports:webrtc-datachannel:1"


async def test_advertised_only_when_enabled_and_installed(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not webrtc_available():
        if on_ci():
            raise AssertionError("CI installs the webrtc extra")
        pytest.skip("aiortc is not installed (pip install 'jet-trio[webrtc]')")
    async with net.pair(sender={"webrtc": True}) as (fa, fb):
        assert WEBRTC in fa.features and WEBRTC not in fb.features
        with trio.fail_after(5):
            assert (await fb.client.features_of(fa.client.jid)).has(WEBRTC)
            assert not (await fa.client.features_of(fb.client.jid)).has(WEBRTC)
    # The extra missing: asked for, but neither advertised nor offered.
    monkeypatch.setattr(jet_trio._transfer.service, "webrtc_available", lambda: False)
    async with net.pair(webrtc=True) as (fa, fb):
        assert WEBRTC not in fa.features and WEBRTC not in fb.features


async def test_asking_for_it_towards_a_peer_without_it_is_typed(net: Net, tmp_path: Path) -> None:
    src = make_file(tmp_path, 1000)
    async with net.pair(sender={"webrtc": True}) as (fa, fb):
        with trio.fail_after(10), pytest.raises(TransportFailed) as caught:
            await fa.send_file(src, fb.client.jid, encrypt=JET_STUB, transport="webrtc")
    assert caught.value.reason == "unsupported-transports"
    assert "does not advertise" in str(caught.value) or "not enabled" in str(caught.value)


async def test_a_peer_that_advertises_it_then_refuses_it(net: Net, tmp_path: Path) -> None:
    """Bob advertises the data channel but cannot take it (it is off here): Alice's offer
    is refused with unsupported-transports, which she sees as TransportFailed, bounded."""
    if not webrtc_available():
        if on_ci():
            raise AssertionError("CI installs the webrtc extra")
        pytest.skip("aiortc is not installed (pip install 'jet-trio[webrtc]')")
    src = make_file(tmp_path, 1000)
    # No STUN/TURN server: gathering only binds local sockets; Bob refuses before any ICE
    # check would be sent.
    async with net.pair(sender={"webrtc": True}) as (fa, fb):
        await fb.client.add_features(WEBRTC)
        with trio.fail_after(5):
            while not (await fa.client.features_of(fb.client.jid)).has(WEBRTC):
                await fa.client.wait_available(net.server.jid("carol"))  # next presence
        start = time.monotonic()
        out = await run_transfer(fa, fb, src, tmp_path / "dest", encrypt=JET_STUB, deadline=30)
    assert isinstance(out.send.error, TransportFailed), out.send.error
    assert out.send.error.reason == "unsupported-transports"
    assert out.recv.offer is None  # refused before the application saw it
    assert time.monotonic() - start < 20


async def test_relay_only_offers_no_address_over_s5b(
    net: Net, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """relay_only: answering an S5B offer, Bob offers no direct candidate (his addresses
    stay his); sending, Alice offers no S5B at all (in-band here: Bob lacks the data
    channel). The files still arrive, encrypted."""
    src = make_file(tmp_path, 5000)
    caplog.set_level("DEBUG", logger="jet_trio._transports.s5b_direct")
    async with net.pair(receiver={"relay_only": True}) as (fa, fb):
        out = await run_transfer(fa, fb, src, tmp_path / "in", encrypt=JET_STUB)
        assert out.send.result is not None, out.send.error
        offered = [r for r in caplog.records if "offering direct candidates" in r.message]
        assert len(offered) == 1  # Alice's, not Bob's
        caplog.clear()
        out = await run_transfer(fb, fa, src, tmp_path / "back", encrypt=JET_STUB)
        assert out.send.result is not None, out.send.error
        assert out.send.result.transport == "ibb"
        assert not [r for r in caplog.records if "offering direct candidates" in r.message]
