"""IQ round trips per second through a private Prosody on 127.0.0.1.

Usage: python bench/bench_iq.py [--count N] [--concurrency 1,16,64] [--repeat N]
                                [--slixmpp-python PATH]

Measured in one run, all clients in this process (one trio thread), Prosody in its own:

* ``jet-trio``: ``Client.ping()`` to the server, and a client-to-client iq: alice's
  ``Client.request("get", <echo/>, bob)`` answered by bob's ``register_iq_handler`` handler;
* ``raw``, the baseline: the same exchanges over streams negotiated by jet-trio's
  ``connect_stream`` (same TLS, SASL, bind), then driven without the client: pre-serialised iq
  bytes out, answers found with one regular expression over the received bytes, no XML parser;
  the raw peer answers every ``get`` it sees.
* ``slixmpp`` (only with ``--slixmpp-python``, a Python with slixmpp installed, e.g. a separate
  bench virtualenv): ``XEP-0199 ping`` to the server and to a second slixmpp client (whose
  xep_0199 plugin answers), in a child process, on asyncio.

Each figure is iq round trips per second, sequentially (concurrency 1) and with C requests in
flight (C tasks, each sending its next request when the previous is answered), median of
``--repeat`` runs of ``--count`` round trips; ratios are to ``raw`` at the same concurrency.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from itertools import count
from pathlib import Path

import trio
from bench_transfer import Endpoint, bench_prosody, prosody_endpoint
from lxml import etree

import jet_trio
from jet_trio._xmpp.connect import connect_stream, make_ssl_context
from jet_trio._xmpp.jid import JID
from jet_trio._xmpp.stanza import E

ECHO = "{urn:jet-trio:bench}echo"
_IQ_TAG = re.compile(rb"<iq\b[^>]*>")
_ATTR = re.compile(rb"""\b(id|type|from)=(?:'([^']*)'|"([^"]*)")""")

RoundTrip = Callable[[], Awaitable[None]]


async def rate(round_trip: RoundTrip, total: int, concurrency: int) -> float:
    """Round trips per second with ``concurrency`` requests in flight."""
    per_task, extra = divmod(total, concurrency)

    async def worker(n: int) -> None:
        for _ in range(n):
            await round_trip()

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(concurrency):
            nursery.start_soon(worker, per_task + (1 if i < extra else 0))
    return total / (time.perf_counter() - t0)


# -- the raw baseline --------------------------------------------------------------------------


class RawStream:
    """A negotiated c2s stream driven with bytes: requests out, iq answers matched by id."""

    def __init__(self, stream: trio.abc.Stream, jid: JID, nursery: trio.Nursery) -> None:
        self.stream = stream
        self.jid = jid
        self._waiting: dict[bytes, trio.Event] = {}
        self._ids = count()
        self._lock = trio.Lock()
        self.answer_gets = False
        nursery.start_soon(self._reader)

    async def _reader(self) -> None:
        buf = b""
        while data := await self.stream.receive_some(65536):
            buf += data
            end = 0
            replies = []
            for m in _IQ_TAG.finditer(buf):
                end = m.end()
                attrs = {k: a or b for k, a, b in _ATTR.findall(m.group())}
                type_, iq_id = attrs.get(b"type"), attrs.get(b"id", b"")
                if type_ in (b"result", b"error"):
                    event = self._waiting.pop(iq_id, None)
                    if event is not None:
                        event.set()
                elif type_ == b"get" and self.answer_gets:
                    replies.append(
                        b"<iq type='result' id='%s' to='%s'/>" % (iq_id, attrs.get(b"from", b""))
                    )
            buf = buf[end:]
            if replies:
                async with self._lock:
                    await self.stream.send_all(b"".join(replies))

    async def round_trip(self, template: bytes) -> None:
        iq_id = b"r%d" % next(self._ids)
        event = self._waiting[iq_id] = trio.Event()
        async with self._lock:
            await self.stream.send_all(template % iq_id)
        await event.wait()


@asynccontextmanager
async def raw_stream(ep: Endpoint, user: str, resource: str) -> AsyncIterator[RawStream]:
    stream, _parser, negotiated, _leftover = await connect_stream(
        JID(ep.jid(user, resource)),
        ep.accounts[user],
        host=ep.host,
        port=ep.port,
        ssl_context=make_ssl_context(ep.ca_file),
    )
    async with trio.open_nursery() as nursery:
        raw = RawStream(stream, negotiated.jid, nursery)
        try:
            yield raw
        finally:
            nursery.cancel_scope.cancel()
            await trio.aclose_forcefully(stream)


# -- jet-trio ------------------------------------------------------------------------------------


async def echo_handler(iq: etree._Element) -> etree._Element | None:
    return None


@asynccontextmanager
async def jet_clients(ep: Endpoint) -> AsyncIterator[tuple[jet_trio.Client, jet_trio.Client]]:
    async with (
        jet_trio.open_client(
            ep.jid("alice", "iq"),
            ep.accounts["alice"],
            host=ep.host,
            port=ep.port,
            ca_file=ep.ca_file,
        ) as a,
        jet_trio.open_client(
            ep.jid("bob", "iq"), ep.accounts["bob"], host=ep.host, port=ep.port, ca_file=ep.ca_file
        ) as b,
    ):
        b.register_iq_handler("get", ECHO, echo_handler)
        yield a, b


# -- slixmpp (a child process on another Python) -------------------------------------------------

SLIXMPP_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys, time, logging
    import slixmpp
    logging.disable(logging.WARNING)
    cfg = json.loads(sys.argv[1])

    def client(user, resource):
        c = slixmpp.ClientXMPP(f"{user}@{cfg['domain']}/{resource}", cfg["accounts"][user])
        c.ca_certs = cfg["ca_file"]
        c.register_plugin("xep_0199")
        return c

    async def rate(fn, total, conc):
        per, extra = divmod(total, conc)
        async def worker(n):
            for _ in range(n):
                await fn()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(per + (i < extra)) for i in range(conc)))
        return total / (time.perf_counter() - t0)

    async def main():
        a, b = client("alice", "slix-a"), client("bob", "slix-b")
        for c in (a, b):
            ready = asyncio.get_running_loop().create_future()
            c.add_event_handler("session_start", lambda _e, f=ready: f.done() or f.set_result(1))
            c.connect(host=cfg["host"], port=cfg["port"])
            await asyncio.wait_for(ready, 30)
        out = {}
        targets = {"server": cfg["domain"], "client": str(b.boundjid)}
        for name, to in targets.items():
            async def rt(to=to):
                iq = a.Iq(stype="get", sto=to)  # what xep_0199's send_ping sends
                iq.enable("ping")
                await iq.send(timeout=30)
            await rate(rt, 50, 1)  # warm-up
            for conc in cfg["concurrency"]:
                runs = [await rate(rt, cfg["count"], conc) for _ in range(cfg["repeat"])]
                out[f"{name}/{conc}"] = sorted(runs)[len(runs) // 2]
        print(json.dumps(out))
        for c in (a, b):
            c.disconnect()

    asyncio.run(main())
    """
)


def run_slixmpp(
    python: str, ep: Endpoint, total: int, concurrency: list[int], repeat: int
) -> dict[str, float]:
    cfg = {
        "domain": ep.domain,
        "host": ep.host,
        "port": ep.port,
        "ca_file": ep.ca_file,
        "accounts": ep.accounts,
        "count": total,
        "concurrency": concurrency,
        "repeat": repeat,
    }
    timeout = 60 + 3 * repeat * len(concurrency) * total / 100
    proc = subprocess.run(
        [python, "-c", SLIXMPP_SCRIPT, json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        print(f"  slixmpp FAILED: {proc.stderr.strip()[-2000:]}")
        return {}
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- main ----------------------------------------------------------------------------------------


async def measure_all(
    ep: Endpoint, total: int, concurrency: list[int], repeat: int
) -> dict[str, float]:
    """Runs of jet-trio and raw are interleaved, so that a disturbance hits both."""
    runs: dict[str, list[float]] = {}
    async with (
        jet_clients(ep) as (a, b),
        raw_stream(ep, "alice", "raw-a") as ra,
        raw_stream(ep, "bob", "raw-b") as rb,
    ):
        with trio.fail_after(10):
            await a.wait_available(b.jid)
        rb.answer_gets = True
        echo = E(ECHO)
        ping_tpl = b"<iq type='get' id='%%s' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>" % (
            ep.domain.encode()
        )
        echo_tpl = b"<iq type='get' id='%%s' to='%s'><echo xmlns='urn:jet-trio:bench'/></iq>" % (
            str(rb.jid).encode()
        )

        async def jet_ping() -> None:
            await a.ping()

        async def jet_c2c() -> None:
            await a.request("get", echo, b.jid)

        async def raw_ping() -> None:
            await ra.round_trip(ping_tpl)

        async def raw_c2c() -> None:
            await ra.round_trip(echo_tpl)

        fns: dict[str, RoundTrip] = {
            "jet-trio/server": jet_ping,
            "raw/server": raw_ping,
            "jet-trio/client": jet_c2c,
            "raw/client": raw_c2c,
        }
        for fn in fns.values():
            await rate(fn, 50, 1)  # warm-up
        for conc in concurrency:
            for _ in range(repeat):
                for key, fn in fns.items():
                    runs.setdefault(f"{key}/{conc}", []).append(await rate(fn, total, conc))
    return {key: statistics.median(values) for key, values in runs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=2000, help="round trips per run")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--slixmpp-python", default=None, help="a Python with slixmpp")
    parser.add_argument("--timeout", type=float, default=600, help="overall bound, seconds")
    args = parser.parse_args()
    concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    print(
        f"jet-trio {jet_trio.__version__}, Python {sys.version.split()[0]},"
        f" trio {trio.__version__};"
        f" {args.count} round trips per run, median of {args.repeat};"
        f" load average {os.getloadavg()[0]:.2f}"
    )
    import trustme

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    base = Path(tempfile.mkdtemp(prefix="jet-bench-iq-"))
    server = bench_prosody(base / "prosody", trustme.CA(), tuned_network=False)
    try:
        ep = prosody_endpoint(server, "prosody")

        async def run() -> dict[str, float]:
            with trio.fail_after(args.timeout):
                return await measure_all(ep, args.count, concurrency, args.repeat)

        results = trio.run(run)
        if args.slixmpp_python:
            for key, value in run_slixmpp(
                args.slixmpp_python, ep, args.count, concurrency, args.repeat
            ).items():
                results[f"slixmpp/{key}"] = value
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)

    libs = ["jet-trio", "raw"] + (["slixmpp"] if args.slixmpp_python else [])
    print(f"{'iq round trips/s':<28}" + "".join(f"{f'C={c}':>18}" for c in concurrency))
    for target in ("server", "client"):
        what = "ping -> server" if target == "server" else "iq -> other client"
        for lib in libs:
            cells = []
            for c in concurrency:
                got = results.get(f"{lib}/{target}/{c}")
                base_value = results.get(f"raw/{target}/{c}")
                if got is None:
                    cells.append(f"{'-':>18}")
                elif base_value and lib != "raw":
                    cells.append(f"{got:10.0f} ({got / base_value:4.2f}x)")
                else:
                    cells.append(f"{got:18.0f}")
            print(f"{lib + ' ' + what:<28}" + "".join(cells))
    print("(ratios are to raw at the same concurrency)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
