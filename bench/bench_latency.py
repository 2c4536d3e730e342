"""Offer-to-end time of a 1 KiB transfer on Prosody and on ejabberd, with and without the
client's TCP settings (delayed acknowledgements, Nagle's algorithm).

Usage: python bench/bench_latency.py [--rounds N] [--sends N]

A private Prosody and a private ejabberd (tests/integration/_servers.py; Prosody without
``stanza_debug``) on 127.0.0.1. In each round, for each server and each variant, two clients
(alice and bob, one trio process) log in and alice sends bob a 1 KiB file ``--sends`` times
(stub envelope, AES-256-GCM, direct S5B); the time of ``send_file`` is offer to
session-terminate: six Jingle/S5B stanza exchanges through the server. Variants:

* ``current``: jet-trio as it is: ``TCP_NODELAY`` (trio sets it on every socket) and
  ``TCP_QUICKACK`` after every read of the client-to-server stream;
* ``no quickack``: the same without ``TCP_QUICKACK`` (delayed acknowledgements, Linux's default);
* ``no quickack, nagle``: also ``TCP_NODELAY`` switched off on the client-to-server socket.

``Prosody*`` is a second Prosody with LAB.md's tuned network settings (``nagle = false`` among
them): what the server's own Nagle costs. Printed: the median offer-to-end time per server and
variant (ms), and the ratios to ``current`` and Prosody / ejabberd, all from the same run,
rounds interleaved.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio

import jet_trio
from jet_trio._xmpp import connect as _connect
from jet_trio._xmpp.ns import JET_STUB

ROOT = Path(__file__).resolve().parent.parent
AES256 = "urn:xmpp:ciphers:aes-256-gcm-nopadding"
VARIANTS = ("current", "no quickack", "no quickack, nagle")


@contextlib.contextmanager
def variant(name: str) -> Iterator[None]:
    saved_quickack, saved_open = _connect._TCP_QUICKACK, _connect._open_tcp
    if name != "current":
        _connect._TCP_QUICKACK = None
    if name == "no quickack, nagle":

        async def open_nagle(target: Any) -> trio.SocketStream:
            stream = await saved_open(target)
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, False)
            return stream

        _connect._open_tcp = open_nagle
    try:
        yield
    finally:
        _connect._TCP_QUICKACK, _connect._open_tcp = saved_quickack, saved_open


async def one_round(info: Any, src: Path, dest_dir: Path, sends: int) -> list[float]:
    times: list[float] = []

    def jid(user: str, resource: str) -> str:
        return f"{user}@{info.domain}/{resource}"

    opts = dict(host=info.host, port=info.port, ca_file=info.ca_file)
    async with (
        jet_trio.open_client(jid("alice", "lat"), info.accounts["alice"], **opts) as alice,
        jet_trio.open_client(jid("bob", "lat"), info.accounts["bob"], **opts) as bob,
        jet_trio.open_file_transfer(alice, allow_stub_envelope=True) as ft_a,
        jet_trio.open_file_transfer(bob, allow_stub_envelope=True) as ft_b,
        trio.open_nursery() as nursery,
    ):

        async def receive() -> None:
            for _ in range(sends):
                offer = await ft_b.next_offer()
                await offer.accept(dest_dir / "got.bin", overwrite=True)

        nursery.start_soon(receive)
        with trio.fail_after(30):
            await alice.wait_available(bob.jid)
        await ft_a.send_file(src, bob.jid, encrypt=JET_STUB, cipher=AES256)  # warm-up
        for _ in range(sends - 1):
            t0 = time.perf_counter()
            await ft_a.send_file(src, bob.jid, encrypt=JET_STUB, cipher=AES256)
            times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sends", type=int, default=6, help="per round (the first untimed)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import trustme

    from tests.integration._servers import PrivateEjabberd, PrivateProsody

    print(
        f"jet-trio {jet_trio.__version__}, Python {sys.version.split()[0]},"
        f" {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}"
    )
    ca = trustme.CA()
    base = Path(tempfile.mkdtemp(prefix="jet-bench-latency-"))
    src = base / "one-kib.bin"
    src.write_bytes(os.urandom(1024))
    servers: list[Any] = []
    try:
        prosody = PrivateProsody(base / "prosody", ca, stanza_debug=False)
        servers.append(prosody)
        tuned = PrivateProsody(base / "tuned", ca, stanza_debug=False, tuned_network=True)
        servers.append(tuned)
        ejabberd = PrivateEjabberd(ca)
        servers.append(ejabberd)
        infos = {
            "Prosody": prosody.start(),
            "Prosody*": tuned.start(),
            "ejabberd": ejabberd.start(),
        }
        res: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for name, info in infos.items():
                for v in VARIANTS:
                    with variant(v):
                        got = trio.run(one_round, info, src, base, args.sends)
                    res.setdefault((name, v), []).extend(got)
    finally:
        for server in servers:
            server.close()
    med = {k: statistics.median(v) * 1000 for k, v in res.items()}
    print(f"offer to end of a 1 KiB transfer, median of {len(next(iter(res.values())))} (ms):")
    for name in infos:
        for v in VARIANTS:
            t = med[(name, v)]
            print(f"  {name:<9} {v:<20} {t:7.1f} ms   x current {t / med[(name, 'current')]:.2f}")
    for v in VARIANTS:
        print(f"  Prosody / ejabberd, {v:<20} {med[('Prosody', v)] / med[('ejabberd', v)]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
