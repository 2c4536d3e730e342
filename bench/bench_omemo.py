"""JET session setup time with OMEMO (first contact and warm) vs unencrypted, through Prosody.

Usage: python bench/bench_omemo.py [--repeat N] [--warm N] [--size BYTES] [--json FILE]

Needs Prosody (``apt-get install prosody``), trustme and the jet-trio-omemo plugin
(``pip install -e plugins/jet-trio-omemo``). For each of ``--repeat`` rounds a fresh private
Prosody (tests/integration/_servers.py, ``stanza_debug`` off) is started, so that OMEMO device
lists and bundles start empty; alice and bob connect in this process over STARTTLS, then:

* ``omemo start``: :func:`jet_trio_omemo.open_omemo` for a new device (100 pre keys per backend
  generated, legacy OMEMO and OMEMO 2 bundles and device lists published);
* ``plain``: ``send_file(..., encrypt=None)`` of a ``--size`` byte file over direct S5B: the
  session setup (offer, accept, transport, ``session-terminate``) dominates;
* ``omemo first contact``: the first JET-OMEMO ``send_file`` to bob: fetch bob's device list and
  bundle, X3DH, the pre-key message, bob building the session passively;
* ``omemo warm``: the following JET-OMEMO transfers (``--warm`` of them): sessions exist;
* ``encrypt warm`` / ``decrypt warm``: the envelope method alone (no Jingle), existing sessions.

Times are wall-clock seconds around the calls; the table shows the median over all rounds and
the ratio to ``plain``. Both clients share one process and one trio loop.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[1]
AES128 = "urn:xmpp:ciphers:aes-128-gcm-nopadding"


async def _timed(
    samples: dict[str, list[float]], name: str, fn: Callable[[], Awaitable[Any]]
) -> Any:
    start = time.perf_counter()
    result = await fn()
    samples.setdefault(name, []).append(time.perf_counter() - start)
    return result


async def one_round(
    info: Any, work: Path, warm: int, size: int, samples: dict[str, list[float]]
) -> None:
    from jet_trio_omemo import OLDMEMO, open_omemo

    from jet_trio import open_client, open_file_transfer
    from jet_trio.plugin import PluginManager, TransportSecret

    src = work / "payload.bin"
    src.write_bytes(os.urandom(size))
    opts: dict[str, Any] = {"host": info.host, "port": info.port, "ca_file": info.ca_file}
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            open_client(f"alice@{info.domain}/a", info.accounts["alice"], **opts)
        )
        b = await stack.enter_async_context(
            open_client(f"bob@{info.domain}/b", info.accounts["bob"], **opts)
        )
        oa = await _timed(
            samples, "omemo start", lambda: stack.enter_async_context(open_omemo(a, work / "a"))
        )
        ob = await stack.enter_async_context(open_omemo(b, work / "b"))
        fa = await stack.enter_async_context(open_file_transfer(a))
        fb = await stack.enter_async_context(open_file_transfer(b))
        with trio.fail_after(10):
            await a.wait_available(b.jid)
            await b.wait_available(a.jid)

        counter = 0

        async def send(encrypt: str | None) -> None:
            nonlocal counter
            counter += 1
            dest = work / f"recv-{counter}.bin"
            async with trio.open_nursery() as n:

                async def receive() -> None:
                    offer = await fb.next_offer()
                    await offer.accept(dest)

                n.start_soon(receive)
                await fa.send_file(src, b.jid, encrypt=encrypt)
            if dest.read_bytes() != src.read_bytes():
                raise AssertionError("received file differs")
            dest.unlink()

        with trio.fail_after(120):
            await send(None)  # warm the S5B/caps paths once, unencrypted
            for _ in range(warm):
                await _timed(samples, "plain", lambda: send(None))
            await _timed(samples, "omemo first contact", lambda: send(OLDMEMO))
            await trio.sleep(0.2)  # let alice process bob's session-completing empty message
            for _ in range(warm):
                await _timed(samples, "omemo warm", lambda: send(OLDMEMO))
            cipher = PluginManager(entry_points=False).cipher(AES128)
            for _ in range(warm):
                secret = TransportSecret.generate(cipher)
                env = await _timed(
                    samples, "encrypt warm", partial(oa.envelopes[0].encrypt, secret, b.jid)
                )
                await _timed(
                    samples, "decrypt warm", partial(ob.envelopes[0].decrypt, env, a.jid, cipher)
                )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="fresh servers (rounds)")
    parser.add_argument("--warm", type=int, default=5, help="warm transfers per round")
    parser.add_argument("--size", type=int, default=1024, help="file size in bytes")
    parser.add_argument("--json", type=Path, help="also write the samples here")
    args = parser.parse_args()

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import trustme

    from tests.integration._servers import PrivateProsody, ServerUnavailable

    # python-omemo warns once per new device that it was not in the (empty) device list yet.
    logging.getLogger("omemo.core").setLevel(logging.ERROR)
    samples: dict[str, list[float]] = {}
    ca = trustme.CA()
    with tempfile.TemporaryDirectory(prefix="bench-omemo-") as tmp:
        for i in range(args.repeat):
            base = Path(tmp) / f"round-{i}"
            server = PrivateProsody(base / "prosody", ca, stanza_debug=False)
            try:
                info = server.start()
            except ServerUnavailable as exc:
                print(f"cannot start Prosody: {exc}", file=sys.stderr)
                return 1
            try:
                work = base / "work"
                work.mkdir(parents=True)
                trio.run(one_round, info, work, args.warm, args.size, samples)
            finally:
                server.stop()

    plain = statistics.median(samples["plain"])
    print(f"JET session setup, {args.size}-byte file, direct S5B, Prosody on loopback")
    print(f"{'case':<22}{'n':>4}{'median ms':>12}{'min ms':>10}{'x plain':>10}")
    for name in (
        "plain",
        "omemo first contact",
        "omemo warm",
        "encrypt warm",
        "decrypt warm",
        "omemo start",
    ):
        values = samples[name]
        med = statistics.median(values)
        ratio = f"{med / plain:.2f}" if name.startswith(("plain", "omemo f", "omemo w")) else ""
        print(f"{name:<22}{len(values):>4}{med * 1e3:>12.1f}{min(values) * 1e3:>10.1f}{ratio:>10}")
    if args.json:
        args.json.write_text(json.dumps(samples, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
