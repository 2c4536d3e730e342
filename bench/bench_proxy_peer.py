"""jet-trio against slixmpp through a server's SOCKS5 proxy (proxy65), on ejabberd and Prosody.

Usage: python bench/bench_proxy_peer.py [SIZE] [--rounds N] [--servers ejabberd,prosody]
       [--slix-sha256] [--prosody-gc LUA_TABLE]

Issue 15's proxy goals, in one run: through the same server's proxy, jet-trio encrypted
(AES-256-GCM, stub envelope) must reach >= 1.0x the throughput of slixmpp unencrypted, with a
receiver CPU per GiB <= 1.5x slixmpp's. Cases, per server:

* ``jet-trio AES-256-GCM``: ``FileTransfer.send_file`` -> ``IncomingOffer.accept`` (Jingle
  file transfer, XEP-0260 SOCKS5 transport, ``direct_addresses=None``: the server's proxy is
  the only candidate), the stub envelope, the receiver decrypting, hashing (SHA-256) and
  writing the file;
* ``jet-trio unencrypted``: the same without encryption;
* ``slixmpp`` (the reference): slixmpp 1.17 has no Jingle file transfer (its ``xep_0234`` is
  only the ``<file/>`` element; there is no XEP-0166/0260 plugin), so the reference is its
  XEP-0065 plugin alone: the sender's ``xep_0065.handshake(receiver)`` discovers the server's
  proxy (disco#items, disco#info, the streamhost query), offers it as the only streamhost
  (slixmpp offers no direct candidates), connects and activates it; then it reads the file in
  ``--slix-chunk`` pieces and ``await``\\ s ``Socks5Protocol.write`` for each, and half-closes.
  The receiver (``auto_accept``) connects to the proxy and writes each ``socks5_data`` event
  into the file. No hash, no encryption, no Jingle session: it does strictly less than
  jet-trio unencrypted.
* ``slixmpp + SHA-256`` (with ``--slix-sha256``; a second reference, not the baseline): the
  same, with the sender hashing what it reads and the receiver what it writes, as a verified
  transfer must.

Each transfer runs between two fresh child processes (spawned) through a private server on
127.0.0.1 (tests/integration/_servers.py; Prosody without ``stanza_debug``, with an ``info``
log). Rounds interleave the cases (A B C A B C ...); medians of ``--rounds``. Timing: jet-trio,
the sender's wall time around ``send_file`` (offer to the receiver's session-terminate,
including the sender's hash while sending and the receiver's ``<checksum/>`` wait and rename);
slixmpp, the sender's start of the handshake to the receiver's last byte written. CPU: user +
system time of each process from its own rusage (all threads) over the transfer, per GiB. The
server's CPU (the process and its children, from psutil) over the whole pair, logins included,
is printed as well. MB = 10^6 bytes. Files live in ``--tmpdir`` (default /dev/shm).

With ``--prosody-gc '{ mode = "generational" }'`` a second Prosody, ``prosody-gc``, runs with that
``gc`` setting (its Lua garbage collector; Prosody 0.12's default is incremental with a pause of
105 %) in the same rounds as the default one: at the default, the collector is most of what
Prosody's proxy65 spends per byte (bench/README.md, "Prosody's proxy is its garbage collector").

slixmpp is not a dependency of jet-trio: without it the bench says how to install it and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib
import io
import logging
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bench_transfer as bt  # bench/ is on sys.path: it is the script's directory

import jet_trio
from jet_trio._xmpp.ns import JET_STUB

if TYPE_CHECKING:
    from tests.integration._servers import PrivateServer

GIB = 1 << 30
SERVERS = ("ejabberd", "prosody")
CASES = ("jet-trio AES-256-GCM", "jet-trio unencrypted", "slixmpp")
SLIX_SHA = "slixmpp + SHA-256"  # --slix-sha256: a second reference, not the baseline
INSTALL_HINT = """\
slixmpp is not installed in this environment: this bench compares jet-trio with it.
Install it next to jet-trio (it is not a dependency of the project), e.g.

    python3 -m venv /tmp/benchenv
    /tmp/benchenv/bin/pip install -e . slixmpp
    /tmp/benchenv/bin/python bench/bench_proxy_peer.py

or `.venv/bin/pip install slixmpp` into the development environment."""


@dataclass
class Run:
    seconds: float
    send_cpu: float
    recv_cpu: float
    server_cpu: float


@dataclass
class Results:
    runs: dict[tuple[str, str], list[Run]] = field(default_factory=dict)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(self, server: str, case: str, run: Run | str) -> None:
        if isinstance(run, str):
            self.errors[(server, case)] = run
        else:
            self.runs.setdefault((server, case), []).append(run)


# -- slixmpp children (asyncio) ----------------------------------------------------------------


async def _slix_client(ep: bt.Endpoint, user: str, resource: str, *, accept: bool) -> Any:
    slixmpp: Any = importlib.import_module("slixmpp")
    client = slixmpp.ClientXMPP(ep.jid(user, resource), ep.accounts[user])
    client.ca_certs = ep.ca_file
    client.register_plugin("xep_0030")
    client.register_plugin("xep_0065", {"auto_accept": accept})
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def started(_event: Any) -> None:
        if not ready.done():
            ready.set_result(None)

    client.add_event_handler("session_start", started)
    client.connect(host=ep.host, port=ep.port)
    await asyncio.wait_for(ready, 30)
    client.send_presence()
    return client


async def _slix_disconnect(client: Any) -> None:
    with contextlib.suppress(TimeoutError, OSError):
        await asyncio.wait_for(client.disconnect(wait=1.0), 5)


async def _slix_send(
    ep: bt.Endpoint,
    path: str,
    chunk: int,
    hashed: bool,
    report: bt.Report,
    link: Any,
    peer_link: Any,
) -> None:
    loop = asyncio.get_running_loop()
    client = await _slix_client(ep, "alice", "slix-send", accept=False)
    bob = await loop.run_in_executor(None, peer_link.get, True, 60)
    report.marks.append(time.monotonic())
    c0 = bt.cpu_time()
    sock = await client["xep_0065"].handshake(bob, timeout=30)
    if sock is None:
        raise RuntimeError("xep_0065 handshake failed (no proxy or no connection)")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(chunk):
            if hashed:
                digest.update(data)
            await sock.write(data)
    # Half-close after the data: Prosody's proxy65 holds back what it buffered until then.
    sock.transport.write_eof()
    await loop.run_in_executor(None, peer_link.get, True, 600)  # the receiver has it all
    report.cpu_seconds += bt.cpu_time() - c0
    sock.transport.close()
    await _slix_disconnect(client)


async def _slix_recv(
    ep: bt.Endpoint, size: int, path: str, hashed: bool, report: bt.Report, link: Any
) -> None:
    loop = asyncio.get_running_loop()
    client = await _slix_client(ep, "bob", "slix-recv", accept=True)
    done: asyncio.Future[None] = loop.create_future()
    conns: list[Any] = []
    got = 0
    digest = hashlib.sha256()
    with open(path, "wb") as f:

        def on_data(data: bytes) -> None:
            nonlocal got
            f.write(data)
            if hashed:
                digest.update(data)
            got += len(data)
            if got >= size and not done.done():
                done.set_result(None)

        client.add_event_handler("socks5_stream", conns.append)
        client.add_event_handler("socks5_data", on_data)
        c0 = bt.cpu_time()
        link.put(str(client.boundjid))
        await done
    report.marks.append(time.monotonic())
    report.cpu_seconds += bt.cpu_time() - c0
    link.put("done")
    if got != size:
        raise RuntimeError(f"received {got} bytes, expected {size}")
    for conn in conns:
        conn.transport.close()
    Path(path).unlink()
    await _slix_disconnect(client)


def _slix_main(
    role: str,
    ep: bt.Endpoint,
    size: int,
    path: str,
    chunk: int,
    hashed: bool,
    timeout: float,
    link: Any,
    peer_link: Any,
    out: Any,
) -> None:
    logging.disable(logging.WARNING)
    report = bt.Report(role)
    coro = (
        _slix_send(ep, path, chunk, hashed, report, link, peer_link)
        if role == "send"
        else _slix_recv(ep, size, path, hashed, report, link)
    )
    try:
        asyncio.run(asyncio.wait_for(coro, timeout))
    except BaseException as exc:  # reported to the parent, which prints it
        report.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        report.error += "\n" + traceback.format_exc(limit=-6)
    out.put(report)


def run_slix(
    ep: bt.Endpoint, size: int, src: Path, dest: Path, chunk: int, hashed: bool
) -> bt.Outcome:
    """One slixmpp transfer between two spawned children."""
    timeout = 90 + size / MB_MIN_RATE
    to_send: Any = bt._ctx.Queue()
    to_recv: Any = bt._ctx.Queue()
    out: Any = bt._ctx.Queue()
    common = (ep, size)
    procs: list[SpawnProcess] = [
        bt._ctx.Process(
            target=_slix_main,
            args=("recv", *common, str(dest), chunk, hashed, timeout, to_send, to_recv, out),
        ),
        bt._ctx.Process(
            target=_slix_main,
            args=("send", *common, str(src), chunk, hashed, timeout, to_recv, to_send, out),
        ),
    ]
    send, recv = bt.run_children(procs, out, timeout)
    outcome = bt.Outcome("slixmpp", size, send, recv)
    starts, ends = outcome.send.marks, outcome.recv.marks
    if starts and ends and not outcome.send.error and not outcome.recv.error:
        outcome.send.seconds = [ends[0] - starts[0]]
    return outcome


MB_MIN_RATE = 5 * bt.MB  # bytes/s: bounds every wait (a stalled transfer fails, never hangs)


# -- the parent -----------------------------------------------------------------------------


def server_cpu(pid: int | None) -> float:
    """User + system CPU seconds of a server process and its children (ejabberd's beam)."""
    if pid is None:
        return 0.0
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def one_run(
    b: bt.Bench, server: PrivateServer, ep: bt.Endpoint, case: str, chunk: int
) -> Run | str:
    s0 = server_cpu(server.pid)
    if case.startswith("slixmpp"):
        outcome = run_slix(ep, b.size, b.src(b.size), b.dest, chunk, case == SLIX_SHA)
    else:
        kwargs: dict[str, Any] = {"encrypt": None}
        if case == "jet-trio AES-256-GCM":
            kwargs = {"encrypt": JET_STUB, "cipher": bt.AES256}
        with contextlib.redirect_stdout(io.StringIO()):  # one line per run, printed below
            outcome = bt.run_pair(
                case,
                "jet",
                ep,
                b.size,
                1,
                src=b.src(b.size),
                dest=b.dest,
                ft_kwargs={"direct_addresses": None},
                send_kwargs=kwargs,
                min_rate=MB_MIN_RATE / bt.MB,
            )
    s1 = server_cpu(server.pid)
    if not outcome.ok:
        err = (outcome.send.error or outcome.recv.error).strip()
        print(f"  {ep.name:<9} {case:<22} FAILED: {err}", flush=True)
        return err.splitlines()[0] if err else "failed"
    seconds = outcome.send.seconds[0]
    run = Run(seconds, outcome.send.cpu_seconds, outcome.recv.cpu_seconds, s1 - s0)
    print(
        f"  {ep.name:<9} {case:<22} {b.size / seconds / bt.MB:8.1f} MB/s"
        f"  CPU send {run.send_cpu:.2f} s, recv {run.recv_cpu:.2f} s, server {run.server_cpu:.2f} s"
        + (f" [{outcome.send.transport}]" if outcome.send.transport else ""),
        flush=True,
    )
    return run


def per_gib(seconds: float, size: int) -> float:
    return seconds / (size / GIB)


def print_table(res: Results, size: int, servers: Sequence[str], cases: Sequence[str]) -> None:
    med = statistics.median
    print()
    print(
        "| server | case | MB/s | runs | wall s/GiB | sender CPU s/GiB | receiver CPU s/GiB"
        " | server CPU s/GiB | MB/s x slixmpp | recv CPU x slixmpp |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for server in servers:
        ref = res.runs.get((server, "slixmpp"))
        ref_rate = size / med([r.seconds for r in ref]) / bt.MB if ref else float("nan")
        ref_recv = per_gib(med([r.recv_cpu for r in ref]), size) if ref else float("nan")
        for case in cases:
            runs = res.runs.get((server, case))
            if not runs:
                err = res.errors.get((server, case), "not run")
                print(f"| {server} | {case} | FAILED: {err} | | | | | | | |")
                continue
            rate = size / med([r.seconds for r in runs]) / bt.MB
            each = ", ".join(f"{size / r.seconds / bt.MB:.0f}" for r in runs)
            send = per_gib(med([r.send_cpu for r in runs]), size)
            recv = per_gib(med([r.recv_cpu for r in runs]), size)
            srv = per_gib(med([r.server_cpu for r in runs]), size)
            wall = GIB / (rate * bt.MB)
            if case == "slixmpp":
                x_rate, x_recv = "1.00 (ref)", "1.00 (ref)"
            else:
                goal_rate = " ✓" if rate / ref_rate >= 1.0 else " ✗"
                goal_cpu = " ✓" if recv / ref_recv <= 1.5 else " ✗"
                x_rate = f"{rate / ref_rate:.2f}{goal_rate if 'AES' in case else ''}"
                x_recv = f"{recv / ref_recv:.2f}{goal_cpu if 'AES' in case else ''}"
            print(
                f"| {server} | {case} | {rate:.0f} | {each} | {wall:.2f} | {send:.2f}"
                f" | {recv:.2f} | {srv:.2f} | {x_rate} | {x_recv} |"
            )
    if SLIX_SHA in cases:
        print()
        print(
            "Against the verified reference (slixmpp hashing what it sends and receives, as a"
            " verified transfer must; same runs):"
        )
        for server in servers:
            ref = res.runs.get((server, SLIX_SHA))
            if not ref:
                continue
            ref_rate = size / med([r.seconds for r in ref]) / bt.MB
            ref_recv = per_gib(med([r.recv_cpu for r in ref]), size)
            for case in (c for c in cases if c.startswith("jet-trio")):
                runs = res.runs.get((server, case))
                if runs:
                    rate = size / med([r.seconds for r in runs]) / bt.MB
                    recv = per_gib(med([r.recv_cpu for r in runs]), size)
                    print(
                        f"  {server:<9} {case:<22} MB/s x {rate / ref_rate:.2f},"
                        f" receiver CPU per GiB x {recv / ref_recv:.2f}"
                    )
    print()
    print(
        "Goals (AES-256-GCM rows): MB/s x slixmpp >= 1.0, receiver CPU per GiB x slixmpp <= 1.5."
        " Server CPU includes both logins (the first run after a start costs more). A side whose"
        " CPU per GiB is close to the wall time per GiB keeps one core busy: that side limits."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("size", nargs="?", default="256M", type=bt.parse_size)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every case (median)")
    parser.add_argument("--servers", default=",".join(SERVERS), help="ejabberd,prosody")
    parser.add_argument(
        "--slix-chunk",
        type=bt.parse_size,
        default=bt.MIB,
        help="bytes per file read and Socks5Protocol.write of the slixmpp sender (1 MiB, as"
        " slixmpp's example S5B sender)",
    )
    parser.add_argument(
        "--slix-sha256",
        action="store_true",
        help=f"add a second reference, {SLIX_SHA!r}: slixmpp hashing the file on both sides",
    )
    parser.add_argument(
        "--prosody-gc",
        metavar="LUA_TABLE",
        help="add a Prosody named prosody-gc with this gc setting, e.g."
        " '{ mode = \"generational\" }' (Prosody's default: incremental, pause 105 %%)",
    )
    parser.add_argument("--tmpdir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    args = parser.parse_args(argv)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if set(servers) - set(SERVERS):
        parser.error(f"unknown servers: {', '.join(sorted(set(servers) - set(SERVERS)))}")
    try:
        slixmpp: Any = importlib.import_module("slixmpp")
    except ImportError:
        print(INSTALL_HINT)
        return 0
    print(
        f"jet-trio {jet_trio.__version__}, slixmpp {slixmpp.__version__},"
        f" Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; size {bt.human(args.size)},"
        f" rounds {args.rounds}, slixmpp chunk {args.slix_chunk};"
        + (f" prosody-gc: gc = {args.prosody_gc};" if args.prosody_gc else "")
        + f" load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    cases = [*CASES, SLIX_SHA] if args.slix_sha256 else list(CASES)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    base = Path(tempfile.mkdtemp(prefix="jet-bench-peer-", dir=args.tmpdir))
    b = bt.Bench(argparse.Namespace(size=args.size, repeat=1, profile=""), base)
    res = Results()
    try:
        eps: list[tuple[str, PrivateServer, bt.Endpoint]] = []
        if args.prosody_gc:
            servers.append("prosody-gc")
        for name in servers:
            if name == "ejabberd":
                ep = b.ejabberd()
            elif name == "prosody-gc":
                ep = b.prosody(tuned=False, gc=args.prosody_gc, name=name)
            else:
                ep = b.prosody(tuned=False)
            if ep is not None:
                eps.append((name, b.servers[-1], ep))
        b.src(args.size)
        for i in range(args.rounds):
            print(f"round {i + 1} of {args.rounds}:", flush=True)
            for name, server, ep in eps:
                for case in cases:
                    res.add(name, case, one_run(b, server, ep, case, args.slix_chunk))
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print_table(res, args.size, [name for name, _, _ in eps], cases)
    finally:
        b.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 1 if res.errors else 0


if __name__ == "__main__":
    sys.exit(main())
