"""Throughput of jet-trio's bytestream transports on loopback, against a plain trio TCP copy.

Usage: python bench/bench_transports.py [SIZE] [--ibb-size SIZE] [--rtt MS] [--repeat N]

SIZE (default 1G; suffixes K, M, G) is streamed through, never held in memory.  Measured in one
run: a plain trio TCP copy, a direct S5B connection (listener + SOCKS5 handshake), a relay through
the in-process proxy65, and IBB through an in-memory iq router that serialises and re-parses
every stanza (one 4096-byte block per round trip vs 65535-byte blocks with a window of 8).
IBB moves ``--ibb-size`` bytes (default min(SIZE, 64M)); rates are MB/s (10^6 bytes per second)
and ratios are to the plain copy.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable
from itertools import count

import trio
from lxml import etree

from jet_trio._transports.ibb import IBBError, IBBStream, open_ibb_stream
from jet_trio._transports.s5b import connect_candidate, dstaddr, open_s5b_listener
from jet_trio._xmpp.jid import JID
from jet_trio.testing._proxy65 import serve_proxy65

CHUNK = 256 * 1024
BLOCK = bytes(range(256)) * (CHUNK // 256)
ALICE = JID("alice@localhost/bench")
BOB = JID("bob@localhost/bench")


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


async def pump(send: trio.abc.SendStream, receive: trio.abc.ReceiveStream, size: int) -> float:
    """Send ``size`` bytes from one end and drain them at the other; return seconds."""
    received = 0

    async def sender() -> None:
        left = size
        view = memoryview(BLOCK)
        while left > 0:
            n = min(left, CHUNK)
            await send.send_all(view[:n])
            left -= n

    async def receiver() -> None:
        nonlocal received
        while received < size:
            data = await receive.receive_some(CHUNK)
            if not data:
                break
            received += len(data)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        nursery.start_soon(receiver)
    elapsed = time.perf_counter() - start
    if received != size:
        raise RuntimeError(f"received {received} of {size} bytes")
    return elapsed


async def plain_tcp(size: int) -> float:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    async with client, server, listeners[0]:
        return await pump(server, client, size)


async def direct_s5b(size: int) -> float:
    dst = dstaddr("bench", ALICE, BOB)
    async with open_s5b_listener() as listener:
        listener.expect(dst)
        client = await connect_candidate(listener.host, listener.port, dst)
        server = await listener.accept(dst)
        async with client, server:
            return await pump(server, client, size)


async def proxy_relay(size: int) -> float:
    dst = dstaddr("bench", ALICE, BOB)
    async with serve_proxy65() as proxy:
        a = await connect_candidate(proxy.host, proxy.port, dst)
        b = await connect_candidate(proxy.host, proxy.port, dst)
        async with a, b:
            proxy.activate("bench", ALICE, BOB)
            return await pump(a, b, size)


class RouterError(Exception):
    pass


class SerialisingRouter:
    """IQSender delivering to the peer stream through XML bytes, like a server would."""

    def __init__(self, rtt: float) -> None:
        self.peer: IBBStream | None = None
        self.rtt = rtt
        self._parser = etree.XMLParser(resolve_entities=False, no_network=True)

    async def send_iq(self, payload: etree._Element) -> etree._Element:
        iq = etree.Element("{jabber:client}iq", type="set", id="x", to=str(BOB))
        iq.append(payload)
        wire = etree.tostring(iq)
        parsed = etree.fromstring(wire, self._parser)[0]
        assert self.peer is not None
        try:
            ack = self.peer.feed(parsed)  # wire order fixed before the first checkpoint
        except IBBError as exc:
            raise RouterError(exc.condition) from exc
        if self.rtt:
            await trio.sleep(self.rtt)
        else:
            await trio.lowlevel.checkpoint()
        await ack.wait()
        return etree.fromstring(b"<iq xmlns='jabber:client' type='result' id='x'/>")


_sids = count()


async def ibb(size: int, block_size: int, window: int, rtt: float) -> float:
    to_b, to_a = SerialisingRouter(rtt), SerialisingRouter(rtt)
    sid = f"bench{next(_sids)}"
    async with open_ibb_stream(to_a, sid, block_size, window=window) as b:
        to_b.peer = b
        async with open_ibb_stream(to_b, sid, block_size, window=window) as a:
            to_a.peer = a
            await a.open()
            return await pump(a, b, size)


async def measure(
    name: str, fn: Callable[[int], Awaitable[float]], size: int, repeat: int
) -> float:
    times = [await fn(size) for _ in range(repeat)]
    rate = size / statistics.median(times) / 1e6
    print(f"  {name:<44} {rate:10.1f} MB/s", flush=True)
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("size", nargs="?", default="1G", type=parse_size)
    parser.add_argument("--ibb-size", type=parse_size, default=None)
    parser.add_argument("--rtt", type=float, default=0.0, help="simulated IBB round trip, ms")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case (median)")
    args = parser.parse_args()
    size: int = args.size
    ibb_size: int = args.ibb_size or min(size, 64 << 20)
    rtt = args.rtt / 1000

    print(f"stream transports, {size / (1 << 20):.0f} MiB each:")
    plain = await measure("plain trio TCP copy", plain_tcp, size, args.repeat)
    s5b = await measure("direct S5B (listener + SOCKS5)", direct_s5b, size, args.repeat)
    relay = await measure("S5B through in-process proxy65", proxy_relay, size, args.repeat)
    print(
        f"IBB through a serialising in-memory router, {ibb_size / (1 << 20):.0f} MiB each"
        f" (simulated rtt {args.rtt} ms):"
    )
    one = await measure(
        "IBB 4096-byte blocks, 1 per round trip",
        lambda n: ibb(n, 4096, 1, rtt),
        ibb_size,
        args.repeat,
    )
    win = await measure(
        "IBB 65535-byte blocks, window 8",
        lambda n: ibb(n, 65535, 8, rtt),
        ibb_size,
        args.repeat,
    )
    print("ratios to the plain copy:")
    for name, rate in [
        ("direct S5B", s5b),
        ("proxy65 relay", relay),
        ("IBB 4096 x1", one),
        ("IBB 65535 x8", win),
    ]:
        print(f"  {name:<44} {rate / plain:10.3f}")


if __name__ == "__main__":
    trio.run(main)
