"""The receiver's cost per byte of an encrypted S5B stream: batched reads against one per read.

Usage: python bench/bench_receive.py [SIZE] [--relay-read SIZE] [--rounds N]

What a SOCKS5 proxy does to a stream, without a server: a child process encrypts SIZE bytes
(default 512M, AES-256-GCM, 256 KiB writes as the driver sends) and relays them to the receiver
through a second loopback connection, reading ``--relay-read`` bytes at a time (default 4096,
as Prosody's proxy65 does; ejabberd's reads are larger) and writing each read on at once. The
receiver (this process) is ``DecryptingReceiveStream.receive_some(256 KiB)`` in a loop, as the
file-transfer driver calls it, minus the file and the hash. Two modes, rounds interleaved:

* ``batched``: the stream as it is (over a socket: ``SO_RCVLOWAT``, a bounded wait, one
  buffer, ``readv``);
* ``per-read``: the same stream with batching switched off (one ``SocketStream.receive_some``
  per read, the stream's behaviour before batching).

Printed per mode: MB/s, the receiver's CPU seconds per GiB (its process only), the number of
``receive_some`` results per MiB and the ratios batched / per-read.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from multiprocessing import get_context

import trio

from jet_trio._jet.cipher import TransportSecret
from jet_trio._jet.stream import DecryptingReceiveStream, EncryptingSendStream
from jet_trio._plugins.builtin_ciphers import AES256GCM

CHUNK = 256 * 1024
GIB = 1 << 30
MODES = ("batched", "per-read")


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


async def _sender_and_relay(
    port: int, key: bytes, iv: bytes, size: int, relay_read: int, nagle: bool
) -> None:
    secret = TransportSecret(key, iv, AES256GCM)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    relay_in_port = listeners[0].socket.getsockname()[1]
    out = await trio.open_tcp_stream("127.0.0.1", port)  # relay -> receiver
    if nagle:  # as Prosody leaves it by default
        out.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, False)

    async def send() -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", relay_in_port)
        async with stream:
            enc = EncryptingSendStream(stream, secret, expected_size=size)
            block = os.urandom(CHUNK)
            left = size
            while left:
                n = min(left, CHUNK)
                await enc.send_all(block[:n])
                left -= n
            await enc.finish()
            await stream.send_eof()

    async with out, trio.open_nursery() as n:
        n.start_soon(send)
        inbound = await listeners[0].accept()
        await listeners[0].aclose()
        async with inbound:
            while data := await inbound.receive_some(relay_read):
                await out.send_all(data)
        await out.send_eof()


def _child(port: int, key: bytes, iv: bytes, size: int, relay_read: int, nagle: bool) -> None:
    trio.run(_sender_and_relay, port, key, iv, size, relay_read, nagle)


async def _receive(mode: str, size: int, relay_read: int, nagle: bool) -> tuple[float, float, int]:
    secret = TransportSecret.generate(AES256GCM)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    proc = get_context("spawn").Process(
        target=_child, args=(port, secret.key, secret.iv, size, relay_read, nagle)
    )
    proc.start()
    try:
        stream = await listeners[0].accept()
        await listeners[0].aclose()
        async with stream:
            dec = DecryptingReceiveStream(stream, secret, expected_size=size, require_eof=False)
            if mode == "per-read":
                dec._batch = None
            got = reads = 0
            w0, c0 = time.perf_counter(), time.process_time()
            while data := await dec.receive_some(CHUNK):
                got += len(data)
                reads += 1
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        if got != size or not dec.verified:
            raise RuntimeError(f"{mode}: got {got} of {size} bytes")
        return wall, cpu, reads
    finally:
        await trio.to_thread.run_sync(proc.join, 30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("size", nargs="?", default="512M", type=parse_size)
    parser.add_argument("--relay-read", default="4096", type=parse_size)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--nagle", action="store_true", help="relay with Nagle's algorithm on (Prosody's default)"
    )
    args = parser.parse_args(argv)
    print(
        f"Python {sys.version.split()[0]}, trio {trio.__version__}, {os.cpu_count()} CPUs;"
        f" {args.size >> 20} MiB, relay reads {args.relay_read} B"
        f"{' with Nagle' if args.nagle else ''};"
        f" load average {os.getloadavg()[0]:.2f}"
    )
    res: dict[str, list[tuple[float, float, int]]] = {m: [] for m in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            res[mode].append(trio.run(_receive, mode, args.size, args.relay_read, args.nagle))
    med: dict[str, tuple[float, float, float]] = {}
    for mode in MODES:
        wall = statistics.median(r[0] for r in res[mode])
        cpu = statistics.median(r[1] for r in res[mode])
        reads = statistics.median(r[2] for r in res[mode])
        med[mode] = (args.size / wall / 1e6, cpu * GIB / args.size, reads / (args.size >> 20))
        print(
            f"  {mode:<9} {med[mode][0]:8.1f} MB/s   receiver CPU {med[mode][1]:6.2f} s/GiB"
            f"   {med[mode][2]:6.1f} reads/MiB"
        )
    b, p = med["batched"], med["per-read"]
    print(
        f"  batched / per-read: MB/s {b[0] / p[0]:.2f}, CPU per GiB {b[1] / p[1]:.2f},"
        f" reads {b[2] / p[2]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
