"""Throughput and CPU of the WebRTC data channel against direct S5B, on one LAN namespace pair.

Usage (as root, with iproute2, nftables and the ``webrtc`` extra installed):
    python bench/bench_webrtc.py [SIZE] [--repeat N]

Builds two hosts on one LAN (network namespaces, prefix ``w4``) and, in the same run, moves
SIZE bytes (default 64M; suffixes K, M, G) from one to the other, JET-encrypted
(AES-256-GCM) as a transfer does:

* ``webrtc``: the data channel (aiortc: ICE host candidates, DTLS, SCTP), each peer's asyncio
  loop in its own thread, moved into its host's namespace;
* ``s5b``: direct SOCKS5 bytestream (jet-trio's listener and SOCKS5 handshake, then TCP).

Both ends run in this one process, so the CPU figure (process time, all threads, per GiB
moved) counts sender and receiver together. Rates are MB/s (10^6 bytes per second); the
median of the repeats is printed with the individual runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jet_trio._jet.cipher import TransportSecret
from jet_trio._jet.stream import DecryptingReceiveStream, EncryptingSendStream
from jet_trio._plugins.builtin_ciphers import AES256GCM
from jet_trio._transports.s5b import connect_candidate, open_s5b_listener
from jet_trio._transports.webrtc import WebRTCConfig, open_webrtc_session
from tests.netns._topology import Host, Topology, in_netns
from tests.netns.test_webrtc import connect_both, in_ns, lan_pair, negotiate

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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("size", nargs="?", default="64M")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = parse_size(args.size)
    with Topology("w4") as topo:
        ha, hb = lan_pair(topo)
        results: dict[str, list[tuple[float, float]]] = {"webrtc": [], "s5b": []}
        for _ in range(args.repeat):
            results["webrtc"].append(await webrtc_run(ha, hb, size))
            results["s5b"].append(await s5b_run(ha, hb, size))
    print(f"{size / MB:.0f} MB JET AES-256-GCM over one LAN namespace pair, {args.repeat} runs")
    for name, runs in results.items():
        print(line(name, size, runs))


if __name__ == "__main__":
    trio.run(main)
