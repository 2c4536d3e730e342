"""Throughput and CPU of the WebRTC data channel against direct S5B, on one LAN namespace pair.

Usage (as root, with iproute2, nftables and the ``webrtc`` extra installed):
    python bench/bench_webrtc.py [SIZE] [--repeat N]

Builds two hosts on one LAN (network namespaces, prefix ``w5``) and, in the same run, moves
SIZE bytes (default 64M; suffixes K, M, G) from one to the other, JET-encrypted
(AES-256-GCM) as a transfer does:

* ``webrtc``: the data channel (aiortc: ICE host candidates, DTLS, SCTP), each peer's asyncio
  loop in its own thread, moved into its host's namespace;
* ``s5b``: direct SOCKS5 bytestream (jet-trio's listener and SOCKS5 handshake, then TCP).

Both ends run in this one process, so the CPU figure (process time, all threads, per GiB
moved) counts sender and receiver together. Rates are MB/s (10^6 bytes per second); the
median of the repeats is printed with the individual runs.

``--sessions`` adds whole Jingle sessions in the same run: two ``jet-trio`` commands (one per
host, stub envelope, AES-256-GCM) through a Prosody without proxy65 on a third host of the
LAN, with the data channel on (``webrtc = true``: offered first) and off (direct S5B). The
figure is the sender's ``seconds``: from the offer to the peer's confirmation, so it includes
the negotiation (for the data channel: gathering, ICE, DTLS, SCTP) and both file hashes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jet_trio._jet.cipher import TransportSecret
from jet_trio._jet.stream import DecryptingReceiveStream, EncryptingSendStream
from jet_trio._plugins.builtin_ciphers import AES256GCM
from jet_trio._transports.s5b import connect_candidate, open_s5b_listener
from jet_trio._transports.webrtc import WebRTCConfig, open_webrtc_session
from tests.netns._peer import Peer, Ran
from tests.netns._topology import Host, Topology, in_netns
from tests.netns.test_webrtc import connect_both, in_ns, negotiate

MB = 1_000_000
GIB = 1 << 30
CHUNK = 256 * 1024


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1:].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


async def jet_copy(
    send: trio.abc.SendStream, receive: trio.abc.ReceiveStream, size: int
) -> tuple[float, float]:
    """Encrypt ``size`` bytes into ``send`` and decrypt them from ``receive``: (s, CPU s)."""
    secret = TransportSecret.generate(AES256GCM)
    block = os.urandom(CHUNK)
    sender = EncryptingSendStream(send, secret, expected_size=size)
    receiver = DecryptingReceiveStream(receive, secret, expected_size=size, require_eof=False)
    got = 0

    async def drain() -> None:
        nonlocal got
        while chunk := await receiver.receive_some(CHUNK):
            got += len(chunk)

    cpu, start = time.process_time(), time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        left = size
        while left:
            n = min(left, CHUNK)
            await sender.send_all(block[:n])
            left -= n
        await sender.finish()
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    if got != size or not receiver.verified:
        raise RuntimeError(f"received {got} of {size} bytes")
    return elapsed, used


async def webrtc_run(ha: Host, hb: Host, size: int) -> tuple[float, float]:
    cfg = WebRTCConfig(connect_timeout=20)
    async with (
        open_webrtc_session(cfg, thread_init=in_ns(ha)) as sa,
        open_webrtc_session(cfg, thread_init=in_ns(hb)) as sb,
    ):
        await negotiate(sa, sb)
        a, b = await connect_both(sa, sb)
        return await jet_copy(a, b, size)


async def s5b_run(ha: Host, hb: Host, size: int) -> tuple[float, float]:
    dst = os.urandom(20).hex()
    async with contextlib.AsyncExitStack() as stack:
        with in_netns(hb.ns):
            listener = await stack.enter_async_context(open_s5b_listener("10.44.1.3"))
        listener.expect(dst)
        with in_netns(ha.ns):
            client = await connect_candidate("10.44.1.3", listener.port, dst)
        stack.push_async_callback(client.aclose)
        server = await listener.accept(dst)
        stack.push_async_callback(server.aclose)
        return await jet_copy(client, server, size)


def line(name: str, size: int, runs: list[tuple[float, float]]) -> str:
    rates = [size / t / MB for t, _ in runs]
    cpu = [c / (size / GIB) for _, c in runs]
    return (
        f"{name:7s} {statistics.median(rates):8.1f} MB/s  "
        f"{statistics.median(cpu):6.1f} CPU s/GiB   runs: " + ", ".join(f"{r:.1f}" for r in rates)
    )


async def one_session(sender: Peer, receiver: Peer, src: Path, inbox: Path) -> dict[str, Any]:
    """``sender`` sends ``src`` to ``receiver`` (stub envelope): the sender's JSON result."""
    results: dict[str, Ran] = {}

    async def receive() -> None:
        results["r"] = await receiver.run(
            ["receive", "--output-dir", str(inbox), "--timeout", "120", "--json",
             "--accept-stub"], limit=600,
        )  # fmt: skip

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        results["s"] = await sender.run(
            ["send", str(src), "--to", receiver.jid, "--json", "--wait", "30",
             "--envelope", "stub"], limit=600,
        )  # fmt: skip
    for ran in results.values():
        if ran.returncode != 0:
            raise RuntimeError(ran.stderr[-4000:])
    result: dict[str, Any] = json.loads(results["s"].stdout.strip().splitlines()[-1])
    return result


async def sessions(topo: Topology, srv: Host, ha: Host, hb: Host, size: int, repeat: int) -> None:
    """Whole Jingle sessions between two jet-trio commands, data channel on and off."""
    import tempfile

    import trustme

    from tests.integration._servers import PrivateProsody

    with tempfile.TemporaryDirectory(prefix="jet-bench-") as tmp:
        base = Path(tmp)
        prosody = PrivateProsody(
            base / "prosody", trustme.CA(), domain="w5.test", netns=srv.ns, host="10.44.1.1",
            proxy65=False, stanza_debug=False,
        )  # fmt: skip
        server = prosody.start()
        try:
            seconds: dict[str, list[float]] = {"webrtc": [], "s5b-direct": []}
            for webrtc in (True, False):
                home = base / ("on" if webrtc else "off")
                peers = []
                for host, user in ((ha, "alice"), (hb, "bob")):
                    peer = Peer(host, user, server, home / user)
                    config = peer.home / ".config" / "jet-trio" / "config.toml"
                    config.parent.mkdir(parents=True, exist_ok=True)
                    config.write_text(f"[defaults]\nwebrtc = {str(webrtc).lower()}\n")
                    peers.append(peer)
                for n in range(repeat):
                    work = home / f"run{n}"
                    (work / "in").mkdir(parents=True)
                    src = work / "payload.bin"
                    src.write_bytes(os.urandom(size))
                    result = await one_session(peers[0], peers[1], src, work / "in")
                    seconds[str(result["transport"])].append(float(result["seconds"]))
        finally:
            prosody.stop()
    print(f"whole sessions, {size / MB:.0f} MB, jet-trio commands through Prosody (no proxy65)")
    for name, runs in seconds.items():
        rates = [size / t / MB for t in runs]
        print(
            f"{name:10s} {statistics.median(runs):7.2f} s  {statistics.median(rates):8.1f} MB/s"
            "   runs: " + ", ".join(f"{t:.2f} s" for t in runs)
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("size", nargs="?", default="64M")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sessions", action="store_true", help="whole Jingle sessions too")
    args = parser.parse_args()
    size = parse_size(args.size)
    with Topology("w5") as topo:
        lan = topo.lan("lan")  # as tests/netns/test_webrtc.py's lan_pair, plus the server
        ha, hb, srv = topo.host("ha"), topo.host("hb"), topo.host("xmpp")
        ha.attach(lan, "10.44.1.2/24")
        hb.attach(lan, "10.44.1.3/24")
        srv.attach(lan, "10.44.1.1/24")
        results: dict[str, list[tuple[float, float]]] = {"webrtc": [], "s5b": []}
        for _ in range(args.repeat):
            results["webrtc"].append(await webrtc_run(ha, hb, size))
            results["s5b"].append(await s5b_run(ha, hb, size))
        print(f"{size / MB:.0f} MB JET AES-256-GCM over one LAN namespace pair, {args.repeat} runs")
        for name, runs in results.items():
            print(line(name, size, runs))
        if args.sessions:
            await sessions(topo, srv, ha, hb, size, args.repeat)


if __name__ == "__main__":
    trio.run(main)
