"""How a receiver should hash: one thread hand-off per batch, one long-lived thread, or inline.

Usage: python bench/bench_hashing.py [SIZE] [--chunk SIZE] [--batch SIZE] [--rounds N]
       [--compete N] [--tmpdir DIR]

A receive loop like the file-transfer driver's, without the network: SIZE bytes (default 512M)
of AES-256-GCM ciphertext arrive in ``--chunk`` pieces (default 64K, a proxy's read size;
each piece costs a trio checkpoint, as a socket read does), are decrypted, written to a file
in ``--tmpdir`` (use /dev/shm to measure software, not a disk) and hashed with SHA-256 in one
of three ways, rounds interleaved:

* ``to_thread``: the driver's current way: pieces joined into ``--batch`` bytes (default
  1 MiB), one ``trio.to_thread.run_sync`` per batch, two batches in flight;
* ``worker``: :class:`jet_trio._transfer.hashes.HashWorker` threaded (one thread for the
  whole transfer, the same batches);
* ``inline``: ``HashWorker`` inline: each batch hashed in the receiving task.

``--compete N`` runs N busy processes meanwhile: on a 2-core machine the sender and the
server want the second core too, which is the case the choice is about. Printed: median wall
time and CPU time (all threads) per GiB, and each as a ratio to ``to_thread`` (same run).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from jet_trio._transfer.hashes import Hasher, HashWorker

GIB = 1 << 30
MODES = ("to_thread", "worker", "inline")


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def _update_all(hasher: Hasher, batch: list[bytes]) -> None:
    hasher.update(batch[0] if len(batch) == 1 else b"".join(batch))


async def receive(
    mode: str, size: int, chunk: int, batch_size: int, path: Path, source: bytes
) -> bytes:
    """``source`` stands for the ciphertext on the wire (repeated up to ``size``)."""
    key, iv = os.urandom(32), os.urandom(12)
    dec = Cipher(algorithms.AES(key), modes.GCM(iv)).decryptor()
    hasher = Hasher(("sha-256",))
    done = 0

    async def pieces(hash_batch: Callable[[list[bytes]], Awaitable[None]]) -> None:
        nonlocal done
        batch: list[bytes] = []
        batched = 0
        with path.open("wb") as f:
            while done < size:
                await trio.lowlevel.checkpoint()  # the socket read
                start = done % len(source)
                n = min(chunk, size - done, len(source) - start)
                data = dec.update(memoryview(source)[start : start + n])
                f.write(data)
                batch.append(data)
                batched += n
                done += n
                if batched >= batch_size:
                    await hash_batch(batch)
                    batch, batched = [], 0
            if batch:
                await hash_batch(batch)

    if mode == "to_thread":
        send, recv = trio.open_memory_channel[list[bytes]](2)

        async def behind() -> None:
            async with recv:
                async for b in recv:
                    await trio.to_thread.run_sync(_update_all, hasher, b)

        async with trio.open_nursery() as n:
            n.start_soon(behind)
            async with send:
                await pieces(send.send)
    else:
        async with HashWorker(hasher, threaded=mode == "worker", max_pending=2) as worker:

            async def to_worker(b: list[bytes]) -> None:
                await worker.update(b[0] if len(b) == 1 else b"".join(b))

            await pieces(to_worker)
    return hasher.digest("sha-256").digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("size", nargs="?", default="512M", type=parse_size)
    parser.add_argument("--chunk", default="64K", type=parse_size)
    parser.add_argument("--batch", default="1M", type=parse_size)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compete", type=int, default=0, help="busy processes meanwhile")
    parser.add_argument("--tmpdir", default=None)
    args = parser.parse_args(argv)
    print(
        f"Python {sys.version.split()[0]}, trio {trio.__version__}, {os.cpu_count()} CPUs"
        f" (usable {len(os.sched_getaffinity(0))}); {args.size >> 20} MiB in"
        f" {args.chunk >> 10} KiB pieces, batches of {args.batch >> 10} KiB,"
        f" {args.compete} competing busy processes; load average {os.getloadavg()[0]:.2f}"
    )
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.compete)
    ]
    results: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in MODES}
    fd, name = tempfile.mkstemp(prefix="bench-hashing-", dir=args.tmpdir)
    os.close(fd)
    path = Path(name)
    source = os.urandom(min(args.size, 64 << 20))
    try:
        for r in range(args.rounds + 1):
            for mode in MODES:
                w0, c0 = time.perf_counter(), time.process_time()
                digest = trio.run(receive, mode, args.size, args.chunk, args.batch, path, source)
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                if digest != hashlib.sha256(path.read_bytes()).digest():
                    print(f"{mode}: WRONG DIGEST")
                    return 1
                if r:  # round 0 warms up
                    results[mode][0].append(wall)
                    results[mode][1].append(cpu)
    finally:
        path.unlink(missing_ok=True)
        for p in busy:
            p.kill()
            p.wait()
    per_gib = GIB / args.size
    base_wall = statistics.median(results["to_thread"][0])
    base_cpu = statistics.median(results["to_thread"][1])
    print(f"medians of {args.rounds} rounds, per GiB:")
    print(f"{'mode':<10} {'wall s':>8} {'CPU s':>8} {'wall x':>8} {'CPU x':>8}")
    for mode in MODES:
        wall = statistics.median(results[mode][0])
        cpu = statistics.median(results[mode][1])
        print(
            f"{mode:<10} {wall * per_gib:8.3f} {cpu * per_gib:8.3f}"
            f" {wall / base_wall:8.2f} {cpu / base_cpu:8.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
