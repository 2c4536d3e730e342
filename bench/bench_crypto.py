"""Throughput of JET transport encryption.

Usage: python bench/bench_crypto.py [MiB] [chunk KiB]   (defaults: 256 MiB, 64 KiB)

Prints MB/s (10**6 bytes per second) for:
* the machine's limit on one core: AES-256-GCM one-shot, SHA-256, and both on the same bytes;
* EncryptingSendStream -> bounded in-memory transport -> DecryptingReceiveStream, AES-128 and
  AES-256 (one task sends, one receives, one core: twice the AES work of one peer), and its
  ratio to the limit; plus AES-256 with the size not announced (the receiver holds back the tag);
* the cost of the guard a third-party cipher runs behind (jet_trio._plugins.guard): AES-256-GCM
  through a guarded view, as a plugin's cipher would be, against the built-in one, in the same
  run (bare chunked calls and streams), and the extra time per chunk.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

import trio
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jet_trio._jet.cipher import Cipher, TransportSecret
from jet_trio._jet.stream import DecryptingReceiveStream, EncryptingSendStream
from jet_trio._plugins.builtin_ciphers import AES128GCM, AES256GCM
from jet_trio._plugins.guard import GuardedCipher

MB = 1_000_000


class _ChannelSend(trio.abc.SendStream):
    """A bounded in-memory transport (backpressure like a socket), sending chunks unchanged."""

    def __init__(self, channel: trio.MemorySendChannel[bytes]) -> None:
        self._channel = channel

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._channel.send(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await self._channel.aclose()


class _ChannelReceive(trio.abc.ReceiveStream):
    def __init__(self, channel: trio.MemoryReceiveChannel[bytes]) -> None:
        self._channel = channel
        self._pending = b""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if not self._pending:
            try:
                self._pending = await self._channel.receive()
            except trio.EndOfChannel:
                return b""
        else:
            await trio.lowlevel.checkpoint()
        if max_bytes is None or max_bytes >= len(self._pending):
            out, self._pending = self._pending, b""
        else:
            out, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return out

    async def aclose(self) -> None:
        await self._channel.aclose()


def _rate(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / MB


def machine_limit(total: int, block_size: int = 1 << 20) -> tuple[float, float, float]:
    """AES-256-GCM one-shot MB/s, SHA-256 MB/s, and both over the same bytes.

    Over cache-sized blocks (1 MiB): one-shot calls on huge buffers are slower (memory-bound),
    which would flatter the ratio.
    """
    block = os.urandom(min(total, block_size))
    rounds = max(1, total // len(block))
    key, iv = os.urandom(32), os.urandom(12)
    aead = AESGCM(key)
    t0 = time.perf_counter()
    for _ in range(rounds):
        aead.encrypt(iv, block, None)
    t_aes = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(rounds):
        hashlib.sha256(block).digest()
    t_sha = time.perf_counter() - t0
    n = rounds * len(block)
    return _rate(n, t_aes), _rate(n, t_sha), _rate(n, t_aes + t_sha)


def guarded(cipher: Cipher) -> Cipher:
    """``cipher`` behind the guard of a third-party plugin's cipher."""
    return GuardedCipher(cipher, "bench", None, lambda problem: None)


def bare_stream_crypto(total: int, chunk: int, cipher: Cipher = AES256GCM) -> float:
    """Encrypt then decrypt chunk by chunk through the cipher objects alone (no streams, no I/O)."""
    secret = TransportSecret.generate(cipher)
    enc, dec = secret.encryptor(), secret.decryptor()
    block = os.urandom(chunk)
    t0 = time.perf_counter()
    for _ in range(total // chunk):
        dec.update(enc.update(block))
    return _rate(total // chunk * chunk, time.perf_counter() - t0)


async def _pipeline(cipher: Cipher, total: int, chunk: int, known_size: bool = True) -> float:
    secret = TransportSecret.generate(cipher)
    block = os.urandom(chunk)
    send_ch, recv_ch = trio.open_memory_channel[bytes](4)
    enc = EncryptingSendStream(_ChannelSend(send_ch), secret, expected_size=total)
    dec = DecryptingReceiveStream(
        _ChannelReceive(recv_ch), secret, expected_size=total if known_size else None
    )
    received = 0

    async def sender() -> None:
        full, rest = divmod(total, chunk)
        for _ in range(full):
            await enc.send_all(block)
        if rest:
            await enc.send_all(block[:rest])
        await enc.finish()
        await enc.aclose()

    async def receiver() -> None:
        nonlocal received
        while data := await dec.receive_some():
            received += len(data)
        await dec.aclose()

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        nursery.start_soon(receiver)
    elapsed = time.perf_counter() - t0
    assert received == total and dec.verified
    return _rate(total, elapsed)


def main(argv: list[str]) -> None:
    mib = int(argv[1]) if len(argv) > 1 else 256
    chunk = (int(argv[2]) if len(argv) > 2 else 64) * 1024
    total = mib << 20
    aes, sha, both = machine_limit(total)
    print(f"data: {mib} MiB, chunks of {chunk // 1024} KiB, 1 core")
    print(f"limit  AES-256-GCM one-shot        {aes:9.1f} MB/s")
    print(f"limit  SHA-256                     {sha:9.1f} MB/s")
    print(f"limit  AES-256-GCM + SHA-256       {both:9.1f} MB/s")
    bare = bare_stream_crypto(total, chunk)
    print(f"bare   AES-256 encrypt+decrypt     {bare:9.1f} MB/s  (chunked, no streams)")
    for cipher, label in ((AES128GCM, "AES-128"), (AES256GCM, "AES-256")):
        rate = trio.run(_pipeline, cipher, total, chunk)
        print(
            f"stream {label} encrypt->decrypt   {rate:9.1f} MB/s  "
            f"({rate / both:.2f} x limit, {rate / aes:.2f} x AES one-shot)"
        )
    rate = trio.run(_pipeline, AES256GCM, total, chunk, False)
    print(f"stream AES-256 size not announced  {rate:9.1f} MB/s  ({rate / both:.2f} x limit)")
    guard_cost(total, chunk)


def _per_call(cipher: Cipher, data: bytes, calls: int) -> float:
    """Seconds per encryptor+decryptor update() pair on ``data``."""
    secret = TransportSecret.generate(cipher)
    enc, dec = secret.encryptor(), secret.decryptor()
    t0 = time.perf_counter()
    for _ in range(calls):
        dec.update(enc.update(data))
    return (time.perf_counter() - t0) / calls


def guard_cost(total: int, chunk: int, rounds: int = 7) -> None:
    """Built-in AES-256-GCM against the same cipher behind a plugin's guard, alternated
    ``rounds`` times (the best of each: the machine is shared), per chunk and through the
    streams; and the guard's own cost per call, on 16-byte updates (next to no AES work)."""
    view = guarded(AES256GCM)
    pair = (("built-in", AES256GCM), ("guarded", view))
    block, tiny = os.urandom(chunk), os.urandom(16)
    calls = max(1, total // chunk)
    per_chunk = {label: float("inf") for label, _ in pair}
    per_tiny = dict(per_chunk)
    stream = {label: 0.0 for label, _ in pair}
    for _ in range(rounds):
        for label, cipher in pair:
            per_chunk[label] = min(per_chunk[label], _per_call(cipher, block, calls))
            per_tiny[label] = min(per_tiny[label], _per_call(cipher, tiny, 20_000))
    for _ in range(3):
        for label, cipher in pair:
            stream[label] = max(stream[label], trio.run(_pipeline, cipher, total, chunk))
    for label, _ in pair:
        print(
            f"guard  {label:8} {chunk // 1024} KiB update pair {per_chunk[label] * 1e6:8.2f} us "
            f"({_rate(chunk, per_chunk[label]):7.1f} MB/s), 16 B pair "
            f"{per_tiny[label] * 1e9:6.0f} ns; stream {stream[label]:7.1f} MB/s"
        )
    own = (per_tiny["guarded"] - per_tiny["built-in"]) * 1e9
    print(
        f"guard  cost per encrypt+decrypt pair {own:.0f} ns = "
        f"{own / (per_chunk['built-in'] * 1e9) * 100:.2f} % of a {chunk // 1024} KiB chunk's "
        f"AES work; measured on {chunk // 1024} KiB chunks: "
        f"{(per_chunk['guarded'] / per_chunk['built-in'] - 1) * 100:+.1f} %, streams: "
        f"{(stream['guarded'] / stream['built-in'] - 1) * 100:+.1f} % (noise of a shared machine)"
    )


if __name__ == "__main__":
    main(sys.argv)
