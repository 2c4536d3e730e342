"""Leak check: many sequential small JET transfers through the in-process server.

Usage: python bench/bench_load.py [--count 1000] [--size 4096] [--every 100]
                                  [--transport auto|ibb] [--encrypt stub|none]

One process runs jet_trio.testing's in-process XMPP server (STARTTLS, test CA) and two clients
(sender and receiver, each with a FileTransfer service). ``--count`` files of ``--size`` random
bytes are sent one after the other with the stub envelope (AES-256-GCM) and verified by SHA-256.
Every ``--every`` transfers the script prints, from /proc/self: the resident set size (VmRSS),
the number of open file descriptors, how many of them are sockets, the number of live trio
tasks and of Python objects tracked by the garbage collector.

After a warm-up, every column should stay flat. A column that grows with the number of transfers
is a leak; the script exits with status 1 if the descriptors grew by more than ``--fd-slack``
between the first and the last sample (``--no-check`` to only report).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from jet_trio import open_client
from jet_trio._transfer.service import open_file_transfer
from jet_trio._xmpp.ns import JET_STUB
from jet_trio.testing import make_tls, serve


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def fd_counts() -> tuple[int, int]:
    total = sockets = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the descriptor of the listdir itself, already closed
            continue
        total += 1
        sockets += target.startswith("socket:")
    return total, sockets


def task_count() -> int:
    count = 0
    root = trio.lowlevel.current_root_task()
    stack = [root] if root is not None else []
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


def sample(done: int, start: float) -> dict[str, Any]:
    gc.collect()
    fds, sockets = fd_counts()
    return {
        "transfers": done,
        "seconds": time.monotonic() - start,
        "rss_kib": rss_kib(),
        "fds": fds,
        "sockets": sockets,
        "tasks": task_count(),
        "gc_objects": len(gc.get_objects()),
    }


def print_row(row: dict[str, Any]) -> None:
    print(
        f"{row['transfers']:>9} {row['seconds']:>8.1f} {row['rss_kib'] / 1024:>8.1f} "
        f"{row['fds']:>5} {row['sockets']:>7} {row['tasks']:>6} {row['gc_objects']:>10}",
        flush=True,
    )


async def run(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    tls = make_tls("localhost")
    src = workdir / "src.bin"
    dest_dir = workdir / "dest"
    dest_dir.mkdir()
    rows: list[dict[str, Any]] = []
    encrypt = JET_STUB if args.encrypt == "stub" else None
    async with serve("localhost", tls=tls.server_context, accounts={"a": "pw", "b": "pw"}) as srv:
        opts: dict[str, Any] = {
            "host": srv.host,
            "port": srv.port,
            "ssl_context": tls.client_context,
        }
        async with (
            open_client("a@localhost/bench", "pw", **opts) as a,
            open_client("b@localhost/bench", "pw", **opts) as b,
            open_file_transfer(a, allow_stub_envelope=True) as fa,
            open_file_transfer(b, allow_stub_envelope=True) as fb,
        ):
            with trio.fail_after(10):
                await a.wait_available(b.jid)
            print(
                f"{'transfers':>9} {'seconds':>8} {'RSS MiB':>8} {'fds':>5} {'sockets':>7} "
                f"{'tasks':>6} {'gc objects':>10}"
            )
            start = time.monotonic()
            rows.append(sample(0, start))
            print_row(rows[-1])
            for i in range(1, args.count + 1):
                # A new file each time (a new name and content), as a user would send.
                data = os.urandom(args.size)
                src.write_bytes(data)
                digest = hashlib.sha256(data).hexdigest()
                dest = dest_dir / f"{i}.bin"
                with trio.fail_after(30):
                    async with trio.open_nursery() as nursery:

                        async def receive(dest: Path = dest) -> None:
                            offer = await fb.next_offer()
                            await offer.accept(dest)

                        nursery.start_soon(receive)
                        await fa.send_file(src, b.jid, encrypt=encrypt, transport=args.transport)
                if hashlib.sha256(dest.read_bytes()).hexdigest() != digest:
                    raise SystemExit(f"transfer {i}: the received file differs")
                dest.unlink()
                if i % args.every == 0 or i == args.count:
                    rows.append(sample(i, start))
                    print_row(rows[-1])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--transport", choices=["auto", "s5b", "ibb"], default="auto")
    parser.add_argument("--encrypt", choices=["stub", "none"], default="stub")
    parser.add_argument("--fd-slack", type=int, default=5)
    parser.add_argument("--no-check", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # silence the stub envelope's per-use warning
    print(
        f"{args.count} sequential transfers of {args.size} bytes, transport={args.transport}, "
        f"encrypt={args.encrypt}, pid {os.getpid()}"
    )
    with tempfile.TemporaryDirectory(prefix="jet-bench-load-") as tmp:
        rows = trio.run(run, args, Path(tmp))
    first, last = rows[1] if len(rows) > 2 else rows[0], rows[-1]
    span = last["transfers"] - first["transfers"] or 1
    print(
        f"growth from {first['transfers']} to {last['transfers']} transfers: "
        f"RSS {(last['rss_kib'] - first['rss_kib']) / 1024:+.1f} MiB, "
        f"fds {last['fds'] - first['fds']:+d} "
        f"({(last['fds'] - first['fds']) / span * 1000:+.0f} per 1000 transfers), "
        f"tasks {last['tasks'] - first['tasks']:+d}, "
        f"gc objects {last['gc_objects'] - first['gc_objects']:+d}"
    )
    if not args.no_check and last["fds"] - first["fds"] > args.fd_slack:
        print("FAIL: open file descriptors grow with the number of transfers (a leak)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
