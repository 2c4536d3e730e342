"""Transfers between two hosts (network namespaces): LAN throughput and fallback times.

Usage (as root, with iproute2, nftables and Prosody installed):
    python bench/bench_netns.py [SIZE] [--repeat N]

Builds the topologies of ``tests/netns`` (case 1: one IPv4 LAN; case 4: two LANs behind NAT,
unreachable private addresses whose SYNs are dropped; case 6: the first interface blackholed
towards the peer) with a private Prosody inside the server's namespace, and measures in one run:

* LAN throughput of ``jet-trio send``/``receive`` (default options: direct SOCKS5), encrypted
  (stub envelope, AES-256-GCM) and unencrypted, as the receiver's result reports it, against
  a raw TCP copy of the same file between the same two namespaces (Python ``socket.sendfile``
  into a file on the receiver);
* the same through the server's Prosody proxy65 (``--direct-host none``), what the old
  default amounted to between two hosts;
* the time from session-accept to a ready SOCKS5 stream (the sender's ``--debug`` log) in
  cases 4 (proxy) and 6 (direct through the second interface).

SIZE defaults to 256M (suffixes K, M, G). Rates are MB/s (10^6 bytes per second).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio
import trustme

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration._servers import PrivateProsody
from tests.netns import test_multihost as cases
from tests.netns._peer import Peer, Ran
from tests.netns._topology import Host, Topology
from tests.netns.conftest import DOMAIN, PREFIX

RECEIVER = """
import socket, sys, time
srv = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
conn, _ = srv.accept()
n = 0
start = None
with open(sys.argv[3], "wb") as out:
    while True:
        data = conn.recv(1 << 20)
        if start is None:
            start = time.perf_counter()
        if not data:
            break
        out.write(data)
        n += len(data)
print(n, time.perf_counter() - start, flush=True)
"""
SENDER = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2]))) as s, open(sys.argv[3], "rb") as f:
    s.sendfile(f)
"""


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def raw_copy(sender: Host, receiver: Host, address: str, src: Path, dest: Path) -> float:
    """MB/s of a plain TCP copy of ``src`` from ``sender`` to ``receiver``."""
    import subprocess

    recv = subprocess.Popen(
        receiver.command(sys.executable, "-c", RECEIVER, address, "5999", str(dest)),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert recv.stdout is not None
    assert recv.stdout.readline().strip() == "ready"
    subprocess.run(
        sender.command(sys.executable, "-c", SENDER, address, "5999", str(src)), check=True
    )
    size, seconds = recv.stdout.readline().split()
    recv.wait(30)
    assert int(size) == src.stat().st_size
    return int(size) / float(seconds) / 1e6


def make_file(path: Path, size: int) -> Path:
    block = bytes(range(256)) * 4096
    with path.open("wb") as f:
        left = size
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)
    return path


async def jet_transfer(
    alice: Peer, bob: Peer, work: Path, src: Path, envelope: str, proxy: bool = False
) -> float:
    inbox = work / f"inbox-{envelope}-{proxy}"
    extra = ["--direct-host", "none"] if proxy else []
    inbox.mkdir(exist_ok=True)
    results: dict[str, Ran] = {}

    async def receive() -> None:
        args = ["receive", "--debug", "--output-dir", str(inbox), "--timeout", "300", "--json",
                "--accept-stub", "--accept-unencrypted", *extra]  # fmt: skip
        results["r"] = await bob.run(args, limit=400)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        results["s"] = await alice.run(
            ["send", "--debug", str(src), "--to", bob.jid, "--json", "--wait", "30",
             "--envelope", envelope, *extra],
            limit=400,
        )  # fmt: skip
    done = cases.Transfer(results["s"], results["r"], src)
    assert done.transport == ("s5b-proxy" if proxy else "s5b-direct"), done.sent.stderr
    (Path(done.receive_result["path"])).unlink()
    return float(done.receive_result["bytes_per_second"]) / 1e6


async def ready_time(
    build: str, work: Path, repeat: int, ca: trustme.CA
) -> tuple[str, list[float]]:
    times = []
    transport = ""
    for i in range(repeat):
        with Topology(PREFIX) as topo:
            if build == "nat":
                srv, ha, hb = cases.natted_lans(topo)
                address = "198.51.100.1"
            else:
                srv, ha, hb = blackholed(topo)
                address = "10.12.1.1"
            server = PrivateProsody(
                work / f"{build}-{i}", ca, domain=DOMAIN, netns=srv.ns, host=address,
                stanza_debug=False,
            )  # fmt: skip
            info = server.start()
            try:
                alice = Peer(ha, "alice", info, work / f"{build}-{i}-a")
                bob = Peer(hb, "bob", info, work / f"{build}-{i}-b")
                done = await cases.transfer(alice, bob, work / f"{build}-{i}")
                transport = done.transport
                times.append(done.ready_seconds())
            finally:
                server.stop()
    return transport, times


def blackholed(topo: Topology) -> tuple[Host, Host, Host]:
    switch, other = topo.lan("lan"), topo.lan("lanb")
    srv, ha, hb = topo.host("xmpp"), topo.host("ha"), topo.host("hb")
    srv.attach(switch, "10.12.1.1/24")
    ha.attach(other, "10.12.6.2/24")
    ha.attach(switch, "10.12.1.2/24")
    hb.attach(switch, "10.12.1.3/24")
    hb.route("10.12.6.0/24", "via", "10.12.1.2")
    ha.nft(
        "table inet n4bh {\n chain input {\n"
        " type filter hook input priority 0; policy accept;\n"
        ' iifname "eth1" ip daddr 10.12.6.2 drop\n }\n}\n'
    )
    return srv, ha, hb


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("size", nargs="?", default="256M")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = parse_size(args.size)
    ca = trustme.CA()
    with tempfile.TemporaryDirectory(prefix="jet-bench-netns-") as tmp:
        work = Path(tmp)
        src = make_file(work / "payload.bin", size)
        with Topology(PREFIX) as topo:
            srv, ha, hb = cases.lan(topo)
            server = PrivateProsody(
                work / "lan", ca, domain=DOMAIN, netns=srv.ns, host="10.12.1.1",
                stanza_debug=False,
            )  # fmt: skip
            info = server.start()
            try:
                alice = Peer(ha, "alice", info, work / "alice")
                bob = Peer(hb, "bob", info, work / "bob")
                rows: dict[str, list[float]] = {
                    "raw TCP": [],
                    "jet stub (AES-GCM)": [],
                    "jet unencrypted": [],
                    "jet stub via proxy65": [],
                }
                for _ in range(args.repeat):
                    rows["raw TCP"].append(raw_copy(ha, hb, "10.12.1.3", src, work / "raw.bin"))
                    (work / "raw.bin").unlink()
                    stub = await jet_transfer(alice, bob, work, src, "stub")
                    rows["jet stub (AES-GCM)"].append(stub)
                    plain = await jet_transfer(alice, bob, work, src, "none")
                    rows["jet unencrypted"].append(plain)
                    proxied = await jet_transfer(alice, bob, work, src, "stub", proxy=True)
                    rows["jet stub via proxy65"].append(proxied)
            finally:
                server.stop()
        print(f"case 1, one IPv4 LAN, {size / 1e6:.0f} MB, median of {args.repeat}:")
        base = statistics.median(rows["raw TCP"])
        for name, rates in rows.items():
            med = statistics.median(rates)
            print(f"  {name:20s} {med:8.1f} MB/s  {med / base:5.2f}x raw   (runs: "
                  + ", ".join(f"{r:.0f}" for r in rates) + ")")  # fmt: skip
        for build, label in (("nat", "case 4, NAT both sides"), ("bh", "case 6, blackholed")):
            started = time.monotonic()
            transport, times = await ready_time(build, work, args.repeat, ca)
            print(f"{label}: {transport}, session-accept to stream ready: median "
                  f"{statistics.median(times):.2f} s, max {max(times):.2f} s (runs: "
                  + ", ".join(f"{t:.2f}" for t in times)
                  + f"; {time.monotonic() - started:.0f} s in all)")  # fmt: skip


if __name__ == "__main__":
    trio.run(main)
