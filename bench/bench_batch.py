"""Many files in one go: a batch against one send per file and against one big file.

Usage: python bench/bench_batch.py [--sets LIST] [--levels LIST] [--cases LIST] [--parallel N]
                                   [--tmpdir DIR]

Two sets of files (``--sets``, default both): ``small`` is 200 files of 64 KiB, ``large`` 20 files
of 16 MiB. For each set, in the same run and against the same receiver, three ways of moving
the same bytes are timed (wall clock, ``time.monotonic()``):

* ``batch``: every file in one go, ``--parallel`` (default 4) at a time;
* ``one-by-one``: one send per file, each after the previous one ended;
* ``one-file``: a single file of the set's total size.

(``--cases`` picks some of them; the ratios need ``batch``.)

At two levels (``--levels``, default both):

* ``cli``: ``jet-trio send DIR`` once, against ``jet-trio send FILE`` run once per file (what a
  user without batches does: a process, a login and a presence wait each), and ``jet-trio send
  BIG``. Timed from the start of the first process to the end of the last.
* ``lib``: :func:`jet_trio.send_files` on one connection, against a loop of
  :meth:`FileTransfer.send_file` on the same connection, and one ``send_file``.

The receiver is a jet-trio client in the benchmark process accepting every offer (up to 4 at
once, the default of ``jet-trio receive``) into a temporary directory, through
jet_trio.testing's in-process server (STARTTLS, proxy65) on 127.0.0.1; transfers use the stub
envelope (AES-256-GCM, the key in clear: the encryption costs what it costs with OMEMO) over
direct SOCKS5 on loopback. Received files are checked (size and SHA-256 verified by the
library) and removed after each case; the files' modification times are touched before each
case, so that no case profits from the hashes the sender cached in an earlier one. The
``lib`` sender shares the receiver's process (one core for both); ``cli`` senders are separate
processes. The machine's load shows in every number: compare the cases of one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

import jet_trio
from jet_trio import open_client, open_file_transfer, send_files
from jet_trio._xmpp.ns import JET_STUB
from jet_trio.testing import make_tls, serve, serve_proxy65

KIB = 1 << 10
MIB = 1 << 20
SETS = {"small": (200, 64 * KIB), "large": (20, 16 * MIB)}
ACCOUNTS = {"alice": "alice-pw", "bob": "bob-pw"}


def make_set(root: Path, count: int, size: int) -> tuple[Path, Path]:
    """``count`` random files of ``size`` bytes in ``root/files``, and one of their total size."""
    files = root / "files"
    files.mkdir(parents=True)
    for i in range(count):
        (files / f"file {i:04}.bin").write_bytes(os.urandom(size))
    big = root / "big.bin"
    with big.open("wb") as f:
        for _ in range(count):
            f.write(os.urandom(size))
    return files, big


class Receiver:
    """bob: accepts every offer, up to 4 at once, into ``inbox``; counts what arrived."""

    def __init__(self, ft: jet_trio.FileTransfer, inbox: Path) -> None:
        self.ft = ft
        self.inbox = inbox
        self.arrived = 0
        self.bytes = 0
        self.failed: list[BaseException] = []
        self.changed = trio.Event()

    async def run(self) -> None:
        slots = trio.Semaphore(4)
        async with trio.open_nursery() as nursery:
            while True:
                await slots.acquire()
                offer = await self.ft.next_offer()
                nursery.start_soon(self._take, offer, slots)

    async def _take(self, offer: jet_trio.IncomingOffer, slots: trio.Semaphore) -> None:
        try:
            result = await offer.accept(self.inbox, rename=True)
            self.arrived += 1
            self.bytes += result.size
        except Exception as exc:
            self.failed.append(exc)
        finally:
            slots.release()
            self.changed.set()
            self.changed = trio.Event()

    async def wait_for(self, files: int) -> None:
        with trio.fail_after(600):
            while self.arrived + len(self.failed) < files:
                await self.changed.wait()

    def reset(self) -> None:
        shutil.rmtree(self.inbox)
        self.inbox.mkdir()
        self.arrived = self.bytes = 0
        if self.failed:
            raise RuntimeError(f"transfers failed: {self.failed[:3]}")


async def timed(
    receiver: Receiver, files: int, size: int, fn: Callable[[], Awaitable[Any]]
) -> float:
    start = time.monotonic()
    await fn()
    await receiver.wait_for(files)
    seconds = time.monotonic() - start
    if receiver.bytes != size or receiver.arrived != files:
        raise RuntimeError(f"{receiver.arrived} files, {receiver.bytes} bytes arrived")
    receiver.reset()
    return seconds


async def cli(env: dict[str, str], *args: str) -> None:
    command = [sys.executable, "-m", "jet_trio", "send", *args, "--to", "bob@localhost"]
    command += ["--envelope", "stub", "--json", "--direct-host", "127.0.0.1"]
    proc = await trio.run_process(command, env=env, capture_stdout=True, capture_stderr=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.decode()[-2000:]}")


class Bench:
    """The three ways of sending one set, at each level."""

    def __init__(
        self,
        args: argparse.Namespace,
        receiver: Receiver,
        fa: jet_trio.FileTransfer,
        to: jet_trio.JID,
        env: dict[str, str],
        paths: list[Path],
        big: Path,
    ) -> None:
        self.args, self.receiver, self.fa, self.to, self.env = args, receiver, fa, to, env
        self.paths, self.big = paths, big
        self.total = sum(p.stat().st_size for p in paths)

    async def _three(
        self,
        batch: Callable[[], Awaitable[Any]],
        each: Callable[[], Awaitable[Any]],
        big: Callable[[], Awaitable[Any]],
    ) -> dict[str, float]:
        n, total = len(self.paths), self.total
        cases = {"batch": (n, batch), "one-by-one": (n, each), "one-file": (1, big)}
        seconds = {}
        for case, (files, fn) in cases.items():
            if case in self.args.cases:
                for p in (*self.paths, self.big):
                    os.utime(p)  # a new mtime: the sender's hash cache misses, as in a new run
                seconds[case] = await timed(self.receiver, files, total, fn)
        return seconds

    async def lib(self) -> dict[str, float]:
        async def batch() -> None:
            result = await send_files(
                self.fa, self.paths, self.to, encrypt=JET_STUB, max_concurrent=self.args.parallel
            )
            if not result.ok:
                raise RuntimeError(result.errors[:3])
            busy = sum(o.busy_retries for o in result.outcomes)
            print(f"       (the receiver answered busy {busy} times)", flush=True)

        async def each() -> None:
            for p in self.paths:
                await self.fa.send_file(p, self.to, encrypt=JET_STUB)

        async def big() -> None:
            await self.fa.send_file(self.big, self.to, encrypt=JET_STUB)

        return await self._three(batch, each, big)

    async def cli(self, directory: Path) -> dict[str, float]:
        async def batch() -> None:
            await cli(self.env, str(directory), "--parallel", str(self.args.parallel))

        async def each() -> None:
            for p in self.paths:
                await cli(self.env, str(p))

        async def big() -> None:
            await cli(self.env, str(self.big))

        return await self._three(batch, each, big)


def report(name: str, level: str, seconds: dict[str, float], total: int) -> None:
    base = seconds.get("batch")
    for case, s in seconds.items():
        ratio = "" if case == "batch" or base is None else f"  batch is {s / base:5.2f}x faster"
        rate = total / s / 1e6
        print(f"{name:6} {level:4} {case:11} {s:8.2f} s {rate:8.1f} MB/s{ratio}", flush=True)


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="jet-trio-bench-", dir=args.tmpdir))
    try:
        ca_file = root / "ca.pem"
        tls = make_tls("localhost", ca_file=ca_file)
        async with (
            serve_proxy65() as proxy,
            serve("localhost", tls=tls.server_context, accounts=ACCOUNTS, proxy65=proxy) as server,
            open_client(
                server.jid("bob", "recv"),
                ACCOUNTS["bob"],
                host=server.host,
                port=server.port,
                ssl_context=tls.client_context,
                mechanisms=["PLAIN"],
            ) as bob,
            open_file_transfer(bob, allow_stub_envelope=True) as fb,
            open_client(
                server.jid("alice", "bench"),
                ACCOUNTS["alice"],
                host=server.host,
                port=server.port,
                ssl_context=tls.client_context,
                mechanisms=["PLAIN"],
            ) as alice,
            open_file_transfer(alice, allow_stub_envelope=True) as fa,
            trio.open_nursery() as nursery,
        ):
            inbox = root / "inbox"
            inbox.mkdir()
            receiver = Receiver(fb, inbox)
            nursery.start_soon(receiver.run)
            await bob.send_presence()
            await alice.send_presence()
            with trio.fail_after(10):
                await alice.wait_available(bob.jid)
            env = {k: v for k, v in os.environ.items() if not k.startswith("JET_TRIO_")}
            env |= {
                "JET_TRIO_ACCOUNT": "alice@localhost",
                "JET_TRIO_PASSWORD": ACCOUNTS["alice"],
                "JET_TRIO_SERVER": f"{server.host}:{server.port}",
                "JET_TRIO_CA_FILE": str(ca_file),
                "XDG_DATA_HOME": str(root / "xdg"),
                "XDG_STATE_HOME": str(root / "xdg-state"),
            }
            print(f"parallel {args.parallel}; files in {root}", flush=True)
            for name in args.sets:
                count, size = SETS[name]
                total = count * size
                files, big = make_set(root / name, count, size)
                print(f"-- {name}: {count} files of {size // KIB} KiB ({total / MIB:.1f} MiB)")
                bench = Bench(args, receiver, fa, bob.jid, env, sorted(files.iterdir()), big)
                if "lib" in args.levels:
                    report(name, "lib", await bench.lib(), total)
                if "cli" in args.levels:
                    report(name, "cli", await bench.cli(files), total)
                shutil.rmtree(root / name)
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", type=lambda s: s.split(","), default=list(SETS))
    parser.add_argument("--levels", type=lambda s: s.split(","), default=["lib", "cli"])
    parser.add_argument(
        "--cases", type=lambda s: s.split(","), default=["batch", "one-by-one", "one-file"]
    )
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--tmpdir", default=None)
    trio.run(main, parser.parse_args())
