"""End-to-end file transfer throughput between two jet-trio clients, each in its own process.

Usage: python bench/bench_transfer.py [SIZE] [--ibb-size SIZE] [--repeat N] [--cases LIST]

Every transfer is ``FileTransfer.send_file`` in one child process and ``IncomingOffer.accept``
in another (a real file read, hashed and written, as a user would see it), through a private
Prosody on 127.0.0.1 (tests/integration/_servers.py, without ``stanza_debug`` and with an
``info`` log) or through jet_trio.testing's in-process server (in a third process). Each number
is compared with a baseline measured in the same run, with the same process layout:

* ``direct``: S5B direct (in-process server, Prosody) vs a plain trio TCP copy between two
  processes (target >= 0.5), with two references: file to file without and with SHA-256;
* ``proxy``: S5B through Prosody's proxy65 vs a raw SOCKS5 copy through the same proxy (two
  raw SOCKS5 connections, activated by an iq from a jet-trio client) (target >= 0.9);
* ``ibb``: IBB through Prosody with LAB.md's tuned network settings, 65535-byte blocks with a
  window of 8 vs 4096-byte blocks with a window of 1 (target >= 4), and the same with
  Prosody's default settings; moves ``--ibb-size`` bytes;
* ``crypto``: AES-256-GCM and AES-128-GCM (stub envelope) vs unencrypted over direct S5B
  (target >= 0.7), and vs this machine's one-core AES-256-GCM + SHA-256 limit (target >= 0.7;
  the SHA-256 file-to-file reference against the same limit bounds it);
* ``whole``: the whole AES-256-GCM ``send_file`` over direct S5B (stub envelope, offer to end,
  the hash included) vs a TCP file-to-file copy that reads, hashes (SHA-256) and encrypts
  (AES-256-GCM), and decrypts, hashes and writes, without XMPP (target >= 0.8);
* ``rss``: peak RSS (VmHWM) of sender and receiver, encrypted direct S5B at ``--rss-small``
  and SIZE (target < 100 MiB, not growing with the size). Every case prints its peaks too.

The sender's wall time around ``send_file`` (offer to the receiver's session-terminate,
including the sender's SHA-256 pass: the file's mtime is touched before each run unless
``--warm-hash``) is what is timed; baselines run from the sender's connect to the receiver's
last byte (``time.monotonic()``, one clock for all processes). Rates are MB/s (10^6 bytes per
second), medians of ``--repeat`` runs. Temporary files live in one directory (``--tmpdir``;
/dev/shm measures software, a disk-backed /tmp measures the disk) that is removed at the end;
servers and children are stopped even on errors and SIGTERM. ``--profile DIR`` runs the
jet-trio children under cProfile.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import multiprocessing
import multiprocessing.synchronize
import os
import queue
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

import jet_trio
from jet_trio._transports.s5b import build_activate, connect_candidate
from jet_trio._transports.socks5 import dstaddr
from jet_trio._xmpp.ns import JET_STUB

if TYPE_CHECKING:
    from tests.integration._servers import PrivateProsody, PrivateServer

ROOT = Path(__file__).resolve().parent.parent

MB = 1_000_000
MIB = 1 << 20
CHUNK = 256 * 1024
AES256 = "urn:xmpp:ciphers:aes-256-gcm-nopadding"
AES128 = "urn:xmpp:ciphers:aes-128-gcm-nopadding"
ALL_CASES = ("direct", "proxy", "proxy-enc", "ibb", "crypto", "whole", "rss")
_ctx = multiprocessing.get_context("spawn")


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def human(size: int) -> str:
    return f"{size / MIB:g} MiB"


@dataclass(frozen=True)
class Endpoint:
    """How the children reach a server (picklable)."""

    name: str
    host: str
    port: int
    ca_file: str
    domain: str
    accounts: dict[str, str] = field(hash=False)
    proxy_jid: str
    proxy_host: str
    proxy_port: int

    def jid(self, user: str, resource: str) -> str:
        return f"{user}@{self.domain}/{resource}"


# -- servers --------------------------------------------------------------------------------


def bench_prosody(
    base_dir: Path, ca: Any, *, tuned_network: bool, gc: str | None = None
) -> PrivateProsody:
    """A PrivateProsody without ``stanza_debug`` and with an ``info`` log: a debug log of every
    stanza in full would dominate IBB and iq timings. ``gc``: a Lua table for Prosody's ``gc``
    setting (its garbage collector), e.g. ``{ mode = "generational" }``; None: Prosody's default.

    Imported here, not at the top: the children (spawned, so they re-import this module) need
    neither pytest nor trustme, which would only inflate their RSS.
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.integration._servers import PrivateProsody

    class BenchProsody(PrivateProsody):
        def _write_config(self) -> None:
            super()._write_config()
            text = self.config_path.read_text(encoding="utf-8")
            new = text.replace('; "stanza_debug"', "")
            new = new.replace("log = { debug =", "log = { info =")
            if new == text:
                print("  (warning: could not drop stanza_debug / debug log from the config)")
            if gc is not None:
                new = new.replace("\nmodules_enabled = ", f"\ngc = {gc}\nmodules_enabled = ", 1)
            self.config_path.write_text(new, encoding="utf-8")

    return BenchProsody(base_dir, ca, tuned_network=tuned_network)


def prosody_endpoint(server: PrivateServer, name: str) -> Endpoint:
    info = server.start()
    return Endpoint(
        name,
        info.host,
        info.port,
        info.ca_file,
        info.domain,
        dict(info.accounts),
        info.proxy_jid,
        info.proxy_host,
        info.proxy_port,
    )


def _inproc_server_main(ca_file: str, out: Any, stop: multiprocessing.synchronize.Event) -> None:
    from jet_trio.testing import make_tls, serve, serve_proxy65

    accounts = {"alice": "alice-pw", "bob": "bob-pw"}

    async def run() -> None:
        tls = make_tls("localhost", ca_file=ca_file)
        async with (
            serve_proxy65() as proxy,
            serve(tls=tls.server_context, accounts=accounts, proxy65=proxy) as server,
        ):
            out.put(
                Endpoint(
                    "in-process",
                    server.host,
                    server.port,
                    ca_file,
                    "localhost",
                    accounts,
                    str(proxy.jid),
                    proxy.host,
                    proxy.port,
                )
            )
            await trio.to_thread.run_sync(stop.wait, abandon_on_cancel=True)

    trio.run(run)


class InProcessServer:
    """jet_trio.testing.serve + serve_proxy65 in a child process of their own."""

    def __init__(self, base: Path) -> None:
        self._stop = _ctx.Event()
        out: Any = _ctx.Queue()
        self._proc = _ctx.Process(
            target=_inproc_server_main, args=(str(base / "inproc-ca.pem"), out, self._stop)
        )
        self._proc.start()
        self.endpoint: Endpoint = out.get(timeout=30)

    def stop(self) -> None:
        self._stop.set()
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)


# -- what runs in the children --------------------------------------------------------------


def rss_parts_kib() -> dict[str, int]:
    """Current RssAnon, RssFile and RssShmem of this process, KiB."""
    parts = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssFile:", "RssShmem:")):
                parts[line.split(":")[0]] = int(line.split()[1])
    return parts


async def sample_rss(report: Report) -> None:
    """Keep the largest RssAnon/RssFile/RssShmem seen (every 20 ms): what the peak is made of."""
    while True:
        for key, value in rss_parts_kib().items():
            report.rss_max_kib[key] = max(report.rss_max_kib.get(key, 0), value)
        await trio.sleep(0.02)


def cpu_time() -> float:
    """User + system CPU seconds of this process so far (all its threads)."""
    t = os.times()
    return t.user + t.system


def vm_hwm_kib() -> int:
    """Peak resident set size of this process (VmHWM), KiB."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


@dataclass(frozen=True)
class Job:
    """One child's work: ``repeat`` transfers (or baseline copies) as ``role``."""

    kind: str  # "jet", "tcp" or "socks5"
    role: str  # "send" or "recv"
    endpoint: Endpoint | None
    size: int
    repeat: int
    path: str = ""
    ft_kwargs: dict[str, Any] = field(default_factory=dict, hash=False)
    send_kwargs: dict[str, Any] = field(default_factory=dict, hash=False)
    timeout: float = 600.0
    transfer_chunk: int = 0  # experiment: override jet_trio._transfer.driver.CHUNK in the child
    warm_hash: bool = False  # let send_file reuse the SHA-256 it cached on the first run
    profile: str = ""  # a file name prefix: run under cProfile, dump to PREFIX-ROLE.prof
    hash_files: bool = True  # tcp file->file baseline: SHA-256 on both sides
    encrypt_ref: bool = False  # tcp file->file baseline: also AES-256-GCM (one stream + tag)


@dataclass
class Report:
    role: str
    seconds: list[float] = field(default_factory=list)
    marks: list[float] = field(default_factory=list)  # time.monotonic(): one clock for all
    transport: str = ""
    wire_bytes: int = 0
    hwm_start_kib: int = 0
    hwm_kib: int = 0
    rss_max_kib: dict[str, int] = field(default_factory=dict)
    cpu_seconds: float = 0.0  # user + system time spent in the timed transfers, summed
    error: str = ""


BLOCK = os.urandom(CHUNK)


async def pump_out(stream: trio.abc.Stream, size: int) -> None:
    view = memoryview(BLOCK)
    left = size
    while left > 0:
        n = min(left, CHUNK)
        await stream.send_all(view[:n])
        left -= n


async def drain(stream: trio.abc.ReceiveStream, size: int) -> None:
    got = 0
    while got < size:
        data = await stream.receive_some(CHUNK)
        if not data:
            raise RuntimeError(f"stream ended after {got} of {size} bytes")
        got += len(data)


async def drain_to_eof(stream: trio.abc.ReceiveStream) -> None:
    with contextlib.suppress(trio.BrokenResourceError):
        while await stream.receive_some(CHUNK):
            pass


async def _jet_child(job: Job, report: Report, link: Any, peer_link: Any) -> None:
    ep = job.endpoint
    assert ep is not None
    if job.transfer_chunk:
        from jet_trio._transfer import driver as _transfer

        _transfer.CHUNK = job.transfer_chunk  # type: ignore[misc]
    user, resource = ("alice", "send") if job.role == "send" else ("bob", "recv")
    async with (
        jet_trio.open_client(
            ep.jid(user, resource),
            ep.accounts[user],
            host=ep.host,
            port=ep.port,
            ca_file=ep.ca_file,
        ) as client,
        jet_trio.open_file_transfer(client, allow_stub_envelope=True, **job.ft_kwargs) as ft,
    ):
        if job.role == "recv":
            link.put(str(client.jid))
            for _ in range(job.repeat):
                offer = await ft.next_offer()
                c0 = cpu_time()
                result = await offer.accept(job.path, overwrite=True)
                report.cpu_seconds += cpu_time() - c0
                report.seconds.append(result.seconds)
                report.transport, report.wire_bytes = result.transport, result.wire_bytes
                # Not timed: removing the last copy (a 1 GiB unlink drops its page cache).
                await trio.Path(job.path).unlink()
                link.put("ready")
            return
        bob = await trio.to_thread.run_sync(peer_link.get, True, 60)
        with trio.fail_after(30):
            await client.wait_available(bob)
        for i in range(job.repeat):
            if i:
                await trio.to_thread.run_sync(peer_link.get, True, 60)
            if not job.warm_hash:  # a new mtime: send_file hashes the file again, as at first
                os.utime(job.path)
            t0, c0 = time.perf_counter(), cpu_time()
            result = await ft.send_file(job.path, bob, **job.send_kwargs)
            report.seconds.append(time.perf_counter() - t0)
            report.cpu_seconds += cpu_time() - c0
            report.transport, report.wire_bytes = result.transport, result.wire_bytes


async def _tcp_child(job: Job, report: Report, link: Any, peer_link: Any) -> None:
    """A plain TCP copy; timed from the sender's connect to the receiver's last byte.

    With ``job.path``: file to file, with SHA-256 on both sides on the fly if
    ``job.hash_files`` (references for what reading, hashing and writing cost); else memory
    to memory.
    """
    if job.role == "recv":
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with listeners[0]:
            link.put(listeners[0].socket.getsockname()[1])
            for _ in range(job.repeat):
                async with await listeners[0].accept() as stream:
                    c0 = cpu_time()
                    if job.path:
                        await drain_to_file(
                            stream, job.size, Path(job.path), job.hash_files, job.encrypt_ref
                        )
                    else:
                        await drain(stream, job.size)
                    report.marks.append(time.monotonic())
                    report.cpu_seconds += cpu_time() - c0
                if job.path:
                    Path(job.path).unlink()
        return
    port = await trio.to_thread.run_sync(peer_link.get, True, 60)
    for _ in range(job.repeat):
        report.marks.append(time.monotonic())
        c0 = cpu_time()
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            if job.path:
                await pump_file(stream, Path(job.path), job.hash_files, job.encrypt_ref)
            else:
                await pump_out(stream, job.size)
            await stream.send_eof()
            await drain_to_eof(stream)
        report.cpu_seconds += cpu_time() - c0


_REF_KEY = bytes(32)
_REF_IV = bytes(12)


def _ref_cipher() -> Any:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    return Cipher(algorithms.AES(_REF_KEY), modes.GCM(_REF_IV))


async def pump_file(
    stream: trio.abc.SendStream, path: Path, hashed: bool, encrypted: bool = False
) -> None:
    """Read, (hash,) (encrypt,) send; with ``encrypted`` the GCM tag follows the data."""
    digest = hashlib.sha256()
    enc = _ref_cipher().encryptor() if encrypted else None
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            if hashed:
                digest.update(chunk)
            await stream.send_all(enc.update(chunk) if enc is not None else chunk)
    if enc is not None:
        enc.finalize()
        await stream.send_all(enc.tag)


async def drain_to_file(
    stream: trio.abc.ReceiveStream, size: int, path: Path, hashed: bool, encrypted: bool = False
) -> None:
    """Receive, (decrypt,) (hash,) write; with ``encrypted`` the tag is read and checked."""
    digest = hashlib.sha256()
    dec = None
    if encrypted:
        dec = _ref_cipher().decryptor()
    wire = size + (16 if encrypted else 0)
    got = 0
    tail = b""
    with path.open("wb") as f:
        while got < wire:
            data = await stream.receive_some(CHUNK)
            if not data:
                raise RuntimeError(f"stream ended after {got} of {wire} bytes")
            got += len(data)
            if dec is not None:
                over = got - size  # bytes of the tag in this piece
                if over > 0:
                    tail += data[len(data) - min(over, len(data)) :]
                    data = data[: len(data) - min(over, len(data))]
                data = dec.update(data)
            f.write(data)
            if hashed:
                digest.update(data)
    if dec is not None:
        dec.finalize_with_tag(tail)


async def _socks5_child(job: Job, report: Report, link: Any, peer_link: Any) -> None:
    """A raw SOCKS5 copy through the proxy; the sender activates it with a jet-trio client.

    Timed from the sender's SOCKS5 connect to the receiver's last byte. The sender half-closes
    after the data, as jet-trio does: Prosody's proxy65 holds back the last bytes it buffered
    until the connection is read-closed.
    """
    ep = job.endpoint
    assert ep is not None
    target = ep.jid("bob", "raw-recv")
    if job.role == "recv":
        for _ in range(job.repeat):
            dst = await trio.to_thread.run_sync(peer_link.get, True, 60)
            async with await connect_candidate(ep.proxy_host, ep.proxy_port, dst) as stream:
                link.put("connected")
                await drain(stream, job.size)
                report.marks.append(time.monotonic())
        return
    async with jet_trio.open_client(
        ep.jid("alice", "raw-send"),
        ep.accounts["alice"],
        host=ep.host,
        port=ep.port,
        ca_file=ep.ca_file,
    ) as client:
        for i in range(job.repeat):
            sid = f"rawcopy{i}"
            dst = dstaddr(sid, client.jid, target)
            link.put(dst)  # the target connects first (XEP-0065), then the requester
            await trio.to_thread.run_sync(peer_link.get, True, 60)
            report.marks.append(time.monotonic())
            async with await connect_candidate(ep.proxy_host, ep.proxy_port, dst) as stream:
                await client.request("set", build_activate(sid, target), ep.proxy_jid)
                await pump_out(stream, job.size)
                await stream.send_eof()
                await drain_to_eof(stream)


_KINDS = {"jet": _jet_child, "tcp": _tcp_child, "socks5": _socks5_child}


def _child_main(job: Job, link: Any, peer_link: Any, out: Any) -> None:
    logging.disable(logging.WARNING)  # the stub envelope's INSECURE warnings, once per run
    report = Report(job.role, hwm_start_kib=vm_hwm_kib())

    async def run() -> None:
        with trio.fail_after(job.timeout):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sample_rss, report)
                await _KINDS[job.kind](job, report, link, peer_link)
                nursery.cancel_scope.cancel()

    try:
        if job.profile:
            import cProfile

            with cProfile.Profile() as prof:
                trio.run(run)
            prof.dump_stats(f"{job.profile}-{job.role}.prof")
        else:
            trio.run(run)
    except BaseException as exc:  # reported to the parent, which prints it
        report.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if not isinstance(exc, trio.TooSlowError):
            report.error += "\n" + traceback.format_exc(limit=-6)
    report.hwm_kib = vm_hwm_kib()
    out.put(report)


# -- the parent ------------------------------------------------------------------------------


@dataclass
class Outcome:
    label: str
    size: int
    send: Report
    recv: Report

    @property
    def ok(self) -> bool:
        return not self.send.error and not self.recv.error and bool(self.send.seconds)

    @property
    def rate(self) -> float:
        return self.size / statistics.median(self.send.seconds) / MB if self.ok else float("nan")


def run_children(procs: list[SpawnProcess], out: Any, timeout: float) -> tuple[Report, Report]:
    """Start the sender and receiver ``procs``, collect their reports from ``out`` (stopping
    early when one fails: the other may wait forever for its peer), and make sure both
    processes are gone. The (send, recv) reports; a missing one says so."""
    reports: dict[str, Report] = {}
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout + 30
        while len(reports) < 2:
            try:
                r: Report = out.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            reports[r.role] = r
            if r.error:  # the other side may wait forever for its peer
                break
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
    missing = Report("?", error="no report (timed out or crashed)")
    return reports.get("send", missing), reports.get("recv", missing)


def run_pair(
    label: str,
    kind: str,
    endpoint: Endpoint | None,
    size: int,
    repeat: int,
    *,
    src: Path | None = None,
    dest: Path | None = None,
    ft_kwargs: dict[str, Any] | None = None,
    send_kwargs: dict[str, Any] | None = None,
    min_rate: float = 1.0,
    profile: str = "",
    warm_hash: bool = False,
    transfer_chunk: int = 0,
    hash_files: bool = True,
    encrypt_ref: bool = False,
) -> Outcome:
    """Run a sender and a receiver child; ``min_rate`` (MB/s) bounds the wait."""
    timeout = 60 + repeat * (20 + size / (min_rate * MB))
    common: dict[str, Any] = dict(
        endpoint=endpoint,
        size=size,
        repeat=repeat,
        ft_kwargs=ft_kwargs or {},
        send_kwargs=send_kwargs or {},
        timeout=timeout,
        warm_hash=warm_hash,
        profile=profile,
        hash_files=hash_files,
        encrypt_ref=encrypt_ref,
    )
    to_send: Any = _ctx.Queue()  # receiver -> sender
    to_recv: Any = _ctx.Queue()  # sender -> receiver
    out: Any = _ctx.Queue()
    recv_job = Job(kind, "recv", path=str(dest or ""), **common)
    send_job = Job(kind, "send", path=str(src or ""), **common)
    procs: list[SpawnProcess] = [
        _ctx.Process(target=_child_main, args=(recv_job, to_send, to_recv, out)),
        _ctx.Process(target=_child_main, args=(send_job, to_recv, to_send, out)),
    ]
    send, recv = run_children(procs, out, timeout)
    outcome = Outcome(label, size, send, recv)
    starts, ends = outcome.send.marks, outcome.recv.marks
    if not outcome.send.seconds and starts:
        outcome.send.seconds = [e - s for s, e in zip(starts, ends, strict=False)]
    print_outcome(outcome)
    return outcome


def _fmt(rate: float) -> str:
    return f"{rate:.0f}" if rate >= 100 else f"{rate:.3g}"


def print_outcome(o: Outcome) -> None:
    if not o.ok:
        err = (o.send.error or o.recv.error).strip()
        print(f"  {o.label:<50} FAILED: {err}", flush=True)
        return
    runs = ", ".join(_fmt(o.size / s / MB) for s in o.send.seconds)
    via = f" [{o.send.transport}]" if o.send.transport else ""
    print(f"  {o.label:<50} {o.rate:8.1f} MB/s  (runs {runs}){via}", flush=True)

    def parts(r: Report) -> str:
        anon, file = (r.rss_max_kib.get(k, 0) / 1024 for k in ("RssAnon", "RssFile"))
        return f"{r.hwm_kib / 1024:.0f} MiB (anon {anon:.0f} + file {file:.0f})"

    print(f"  {'':<50} RSS peak: sender {parts(o.send)}, receiver {parts(o.recv)}", flush=True)
    n = len(o.send.seconds)
    wall = sum(o.send.seconds) / n
    cpu_s, cpu_r = o.send.cpu_seconds / n, o.recv.cpu_seconds / n
    if cpu_s and cpu_r:
        print(
            f"  {'':<50} CPU per run: sender {cpu_s:.2f} s, receiver {cpu_r:.2f} s "
            f"({(cpu_s + cpu_r) / wall:.2f} of {os.cpu_count()} cores busy on average)",
            flush=True,
        )


def ratio_line(name: str, num: Outcome | float, den: Outcome | float, target: str) -> None:
    a = num.rate if isinstance(num, Outcome) else num
    b = den.rate if isinstance(den, Outcome) else den
    value = a / b if b else float("nan")
    print(f"  {name:<62} {value:7.2f}   (target {target})")


def make_file(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        left = size
        while left > 0:
            n = min(left, 4 * MIB)
            f.write(os.urandom(n))
            left -= n
    return path


class Bench:
    def __init__(self, args: argparse.Namespace, base: Path) -> None:
        self.args = args
        self.base = base
        self.size: int = args.size
        self.repeat: int = args.repeat
        import trustme

        self.ca = trustme.CA()
        self.servers: list[PrivateServer] = []
        self._files: dict[int, Path] = {}
        self.ratios: list[Callable[[], None]] = []

    def src(self, size: int) -> Path:
        if size not in self._files:
            self._files[size] = make_file(self.base / f"src-{size}.bin", size)
        return self._files[size]

    @property
    def dest(self) -> Path:
        return self.base / "received.bin"

    def prosody(self, tuned: bool, *, gc: str | None = None, name: str | None = None) -> Endpoint:
        name = name or ("prosody-tuned" if tuned else "prosody")
        server = bench_prosody(self.base / name, self.ca, tuned_network=tuned, gc=gc)
        self.servers.append(server)
        return prosody_endpoint(server, name)

    def ejabberd(self) -> Endpoint | None:
        """A private ejabberd (mod_proxy65), or None (with a note) where it cannot run."""
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from tests.integration._servers import PrivateEjabberd, ServerUnavailable

        try:
            server = PrivateEjabberd(self.ca)
        except ServerUnavailable as exc:
            print(f"  (ejabberd skipped: {exc})")
            return None
        self.servers.append(server)
        return prosody_endpoint(server, "ejabberd")

    def jet(
        self,
        label: str,
        ep: Endpoint,
        size: int,
        ft_kwargs: dict[str, Any] | None = None,
        min_rate: float = 5.0,
        repeat: int | None = None,
        **send_kwargs: Any,
    ) -> Outcome:
        send_kwargs.setdefault("encrypt", None)
        return run_pair(
            label,
            "jet",
            ep,
            size,
            repeat or self.repeat,
            src=self.src(size),
            dest=self.dest,
            ft_kwargs=ft_kwargs,
            send_kwargs=send_kwargs,
            min_rate=min_rate,
            profile=self.profile_prefix(label),
            warm_hash=self.args.warm_hash,
            transfer_chunk=self.args.transfer_chunk,
        )

    def profile_prefix(self, label: str) -> str:
        if not self.args.profile:
            return ""
        Path(self.args.profile).mkdir(parents=True, exist_ok=True)
        slug = "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")
        return str(Path(self.args.profile) / slug)

    def stop(self) -> None:
        for server in self.servers:
            server.close()  # ejabberd's also removes its directory (outside the bench's)


def file_reference(b: Bench, hashed: bool = True, encrypted: bool = False) -> Outcome:
    """A TCP copy from file to file between two processes, without XMPP or encryption; with
    ``hashed``, the least a verified transfer does: read, SHA-256, send; receive, SHA-256,
    write; with ``encrypted`` too, the least an encrypted one does: read, SHA-256, AES-256-GCM,
    send; receive, decrypt, SHA-256, write (and the tag)."""
    what = "SHA-256 both sides" if hashed else "no hashing"
    if encrypted:
        what += ", AES-256-GCM"
    return run_pair(
        f"  reference: TCP file->file, {what}",
        "tcp",
        None,
        b.size,
        b.repeat,
        src=b.src(b.size),
        dest=b.dest,
        hash_files=hashed,
        encrypt_ref=encrypted,
    )


def case_direct(b: Bench, prosody: Endpoint) -> None:
    print(f"direct S5B on loopback, {human(b.size)}:")
    plain = run_pair("plain trio TCP copy (2 processes)", "tcp", None, b.size, b.repeat)
    copy = file_reference(b, hashed=False)
    ref = file_reference(b)
    inproc_server = InProcessServer(b.base)
    try:
        inproc = b.jet("S5B direct, in-process server", inproc_server.endpoint, b.size)
    finally:
        inproc_server.stop()
    pros = b.jet("S5B direct, Prosody", prosody, b.size)

    def ratios() -> None:
        ratio_line("S5B direct (in-process server) / plain TCP copy", inproc, plain, ">= 0.5")
        ratio_line("S5B direct (Prosody) / plain TCP copy", pros, plain, ">= 0.5")
        ratio_line("  reference file->file copy, no hashing / plain TCP copy", copy, plain, "none")
        ratio_line("  reference file->file copy, SHA-256 / plain TCP copy", ref, plain, "none")
        ratio_line("  S5B direct (Prosody) / reference file->file copy", pros, ref, "none")

    b.ratios.append(ratios)


def case_proxy(b: Bench, prosody: Endpoint) -> None:
    print(f"S5B through Prosody's proxy65, {human(b.size)}:")
    raw = run_pair("raw SOCKS5 copy through proxy65", "socks5", prosody, b.size, b.repeat)
    jet = b.jet("S5B proxy (direct_addresses=None)", prosody, b.size, {"direct_addresses": None})

    def ratios() -> None:
        ratio_line("S5B proxy / raw SOCKS5 copy through the same proxy", jet, raw, ">= 0.9")

    b.ratios.append(ratios)


def case_proxy_enc(b: Bench, prosody: Endpoint) -> None:
    """Encrypted (AES-256-GCM, stub envelope) S5B through each server's proxy, against the
    same proxy unencrypted and a raw SOCKS5 copy: the receiver's cost per proxy read."""
    servers = [("Prosody", prosody)]
    ejabberd = b.ejabberd()
    if ejabberd is not None:
        servers.append(("ejabberd", ejabberd))
    rows: list[tuple[str, Outcome, Outcome, Outcome]] = []
    for name, ep in servers:
        print(f"S5B through {name}'s proxy, {human(b.size)}:")
        raw = run_pair(f"raw SOCKS5 copy through {name}", "socks5", ep, b.size, b.repeat)
        plain = b.jet(f"S5B proxy {name}, unencrypted", ep, b.size, {"direct_addresses": None})
        enc = b.jet(
            f"S5B proxy {name}, AES-256-GCM",
            ep,
            b.size,
            {"direct_addresses": None},
            encrypt=JET_STUB,
            cipher=AES256,
        )
        rows.append((name, raw, plain, enc))

    def ratios() -> None:
        for name, raw, plain, enc in rows:
            ratio_line(f"{name} proxy: AES-256-GCM / unencrypted", enc, plain, "report")
            ratio_line(f"{name} proxy: AES-256-GCM / raw SOCKS5 copy", enc, raw, "report")

    b.ratios.append(ratios)


def case_ibb(b: Bench, prosody: Endpoint, tuned: Endpoint) -> None:
    size: int = b.args.ibb_size
    print(f"IBB through Prosody, {human(size)}:")
    results: dict[tuple[str, bool], Outcome] = {}
    for ep, is_tuned in ((tuned, True), (prosody, False)):
        settings = "tuned" if is_tuned else "default"
        for name, block, window in (("big", 65535, 8), ("small", 4096, 1)):
            results[(name, is_tuned)] = b.jet(
                f"IBB {block} x{window}, {settings} network settings",
                ep,
                size,
                {"ibb_block_size": block, "ibb_window": window},
                min_rate=0.5,
                transport="ibb",
            )

    def ratios() -> None:
        for is_tuned, settings in ((True, "tuned"), (False, "default")):
            ratio_line(
                f"IBB 65535x8 / 4096x1, Prosody {settings} settings",
                results[("big", is_tuned)],
                results[("small", is_tuned)],
                ">= 4" if is_tuned else "report",
            )

    b.ratios.append(ratios)


def case_whole(b: Bench, prosody: Endpoint) -> None:
    """The whole ``send_file`` (offer, hash, data, end) over direct S5B, AES-256-GCM with the
    stub envelope, against the least work an encrypted, verified copy does without XMPP."""
    print(f"whole encrypted send over direct S5B (Prosody, stub envelope), {human(b.size)}:")
    ref = file_reference(b, encrypted=True)
    a256 = b.jet("AES-256-GCM", prosody, b.size, encrypt=JET_STUB, cipher=AES256)

    def ratios() -> None:
        ratio_line(
            "AES-256-GCM whole send / reference (SHA-256 + AES-256-GCM)", a256, ref, ">= 0.8"
        )

    b.ratios.append(ratios)


def case_crypto(b: Bench, prosody: Endpoint) -> None:
    print(f"encryption over direct S5B (Prosody, stub envelope), {human(b.size)}:")
    from bench_crypto import machine_limit  # bench/ is on sys.path: it is the script's dir

    limit_bytes = min(b.size, 256 * MIB)
    aes, sha, both = machine_limit(limit_bytes)
    print(
        f"  limit AES-256-GCM one-shot {aes:.0f}, SHA-256 {sha:.0f}, both {both:.0f} MB/s, 1 core"
    )
    ref = file_reference(b)
    plain = b.jet("unencrypted", prosody, b.size)
    a256 = b.jet("AES-256-GCM", prosody, b.size, encrypt=JET_STUB, cipher=AES256)
    a128 = b.jet("AES-128-GCM", prosody, b.size, encrypt=JET_STUB, cipher=AES128)

    def ratios() -> None:
        for name, o in (("AES-256-GCM", a256), ("AES-128-GCM", a128)):
            ratio_line(f"{name} / unencrypted direct S5B", o, plain, ">= 0.7")
            ratio_line(f"{name} / one-core AES-256-GCM + SHA-256 limit", o, both, ">= 0.7")
        # An upper bound for the line above on this machine: the reference does less work
        # (no encryption, no XMPP) than any encrypted transfer.
        ratio_line("  reference file->file, SHA-256 / the same limit", ref, both, "none")

    b.ratios.append(ratios)


def case_rss(b: Bench, prosody: Endpoint) -> None:
    sizes = sorted({b.args.rss_small, b.size})
    print("peak RSS (VmHWM) of sender / receiver, AES-256-GCM over direct S5B (Prosody):")
    outs = [
        b.jet(f"AES-256-GCM, {human(s)}", prosody, s, encrypt=JET_STUB, cipher=AES256, repeat=1)
        for s in sizes
    ]

    def ratios() -> None:
        for o in outs:
            print(
                f"  peak RSS at {human(o.size):<10} sender {o.send.hwm_kib / 1024:6.1f} MiB"
                f" (at start {o.send.hwm_start_kib / 1024:.1f}), receiver"
                f" {o.recv.hwm_kib / 1024:6.1f} MiB (at start {o.recv.hwm_start_kib / 1024:.1f})"
                "   (target < 100 MiB, flat)"
            )

    b.ratios.append(ratios)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("size", nargs="?", default="1G", type=parse_size)
    parser.add_argument("--ibb-size", type=parse_size, default=parse_size("16M"))
    parser.add_argument("--rss-small", type=parse_size, default=parse_size("256M"))
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median)")
    parser.add_argument(
        "--cases", default=",".join(ALL_CASES), help=f"comma-separated, of {','.join(ALL_CASES)}"
    )
    parser.add_argument(
        "--profile", default="", help="directory: run jet-trio children under cProfile"
    )
    parser.add_argument(
        "--warm-hash",
        action="store_true",
        help="let send_file reuse its cached SHA-256 of the file after the first run",
    )
    parser.add_argument(
        "--transfer-chunk",
        type=parse_size,
        default=0,
        help="experiment: set jet_trio._transfer.driver.CHUNK (file read / receive size)"
        " in the children",
    )
    parser.add_argument("--tmpdir", default=None, help="where the temporary files go")
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(ALL_CASES)
    if unknown:
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    print(
        f"jet-trio {jet_trio.__version__}, Python {sys.version.split()[0]},"
        f" trio {trio.__version__}, {os.cpu_count()} CPUs; size {human(args.size)},"
        f" IBB {human(args.ibb_size)},"
        f" repeat {args.repeat}; load average {os.getloadavg()[0]:.2f}"
    )
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C: the servers stop, the files go.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    base = Path(tempfile.mkdtemp(prefix="jet-bench-transfer-", dir=args.tmpdir))
    bench = Bench(args, base)
    try:
        prosody = bench.prosody(tuned=False)
        if "direct" in cases:
            case_direct(bench, prosody)
        if "proxy" in cases:
            case_proxy(bench, prosody)
        if "proxy-enc" in cases:
            case_proxy_enc(bench, prosody)
        if "ibb" in cases:
            case_ibb(bench, prosody, bench.prosody(tuned=True))
        if "crypto" in cases:
            case_crypto(bench, prosody)
        if "whole" in cases:
            case_whole(bench, prosody)
        if "rss" in cases:
            case_rss(bench, prosody)
        print(f"load average at the end: {os.getloadavg()[0]:.2f} (other work on the machine)")
        print("ratios:")
        for show in bench.ratios:
            show()
    finally:
        bench.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
