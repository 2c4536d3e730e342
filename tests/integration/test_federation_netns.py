"""Federation across two hosts: each server and its user on a network stack of its own.

Two network namespaces joined by a veth pair stand for two machines on one LAN: host A
(10.212.0.1) runs Prosody for a.test, a DNS server for the test names and ``jet-trio`` as
alice@a.test; host B (10.212.0.2) runs Prosody for b.test and ``jet-trio`` as bob@b.test. The
servers find each other through SRV records of that DNS server and authenticate each other with
certificates of the test CA. The real command-line tool sends a file with JET-OMEMO (its default)
each way. Only addresses of the namespaces this test creates are contacted.

Needs root and ``ip`` (iproute2): elsewhere the test is skipped with the reason, and with
``CI=true`` it fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from ._servers import (
    PrivateProsody,
    ServerInfo,
    find_prosody,
    have_lua_unbound,
    missing_server,
    on_ci,
)

if not on_ci():  # CI installs every plugins/*/ distribution: there, a missing one fails
    pytest.importorskip("jet_trio_omemo", reason="plugins/jet-trio-omemo is not installed")

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ADDR_A = "10.212.0.1"
ADDR_B = "10.212.0.2"
OMEMO2 = "urn:xmpp:omemo:2"  # what the default (encrypt auto) picks between jet-trio peers


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15, check=False)


@dataclass(frozen=True)
class TwoHosts:
    ns_a: str
    ns_b: str


@pytest.fixture
def two_hosts() -> Iterator[TwoHosts]:
    """Two namespaces (``j12s-<tag>-a``/``-b``) joined by a veth pair, loopback up in each."""
    if shutil.which("ip") is None:
        missing_server("iproute2 (ip) is not installed: cannot build network namespaces")
    if os.geteuid() != 0:
        missing_server("network namespaces need root")
    tag = secrets.token_hex(3)
    hosts = TwoHosts(f"j12s-{tag}-a", f"j12s-{tag}-b")
    made: list[str] = []
    try:
        for ns in (hosts.ns_a, hosts.ns_b):
            done = _ip("netns", "add", ns)
            if done.returncode != 0:
                missing_server(f"cannot create a network namespace: {done.stderr.strip()}")
            made.append(ns)
        steps = [
            (
                *("link", "add", f"j12s{tag}a", "netns", hosts.ns_a, "type", "veth"),
                *("peer", "name", f"j12s{tag}b", "netns", hosts.ns_b),
            ),
            ("-n", hosts.ns_a, "addr", "add", f"{ADDR_A}/24", "dev", f"j12s{tag}a"),
            ("-n", hosts.ns_b, "addr", "add", f"{ADDR_B}/24", "dev", f"j12s{tag}b"),
            ("-n", hosts.ns_a, "link", "set", f"j12s{tag}a", "up"),
            ("-n", hosts.ns_b, "link", "set", f"j12s{tag}b", "up"),
            ("-n", hosts.ns_a, "link", "set", "lo", "up"),
            ("-n", hosts.ns_b, "link", "set", "lo", "up"),
        ]
        for step in steps:
            done = _ip(*step)
            if done.returncode != 0:
                missing_server(f"ip {' '.join(step)} failed: {done.stderr.strip()}")
        yield hosts
    finally:
        for ns in made:  # deleting a namespace removes its end of the veth pair too
            _ip("netns", "del", ns)


def in_ns(ns: str, *command: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *command]


def cli_env(tmp: Path, server: ServerInfo, user: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JET_TRIO_")}
    env.update(
        XDG_DATA_HOME=str(tmp / f"{user}-data"),
        COLUMNS="200",
        JET_TRIO_ACCOUNT=server.jid(user),
        JET_TRIO_PASSWORD=server.password(user),
        JET_TRIO_SERVER=f"{server.host}:{server.port}",
        JET_TRIO_CA_FILE=server.ca_file,
    )
    return env


def one_json(stdout: str) -> dict[str, object]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, stdout
    assert isinstance(lines[0], dict)
    return lines[0]


def transfer(
    tmp: Path,
    src: Path,
    sender: tuple[str, ServerInfo, str],
    receiver: tuple[str, ServerInfo, str],
) -> tuple[dict[str, object], dict[str, object]]:
    """``jet-trio receive`` on the receiver's host, ``jet-trio send`` on the sender's."""
    s_ns, s_server, s_user = sender
    r_ns, r_server, r_user = receiver
    inbox = tmp / f"inbox-{r_user}"
    inbox.mkdir(parents=True)
    python = [sys.executable, "-m", "jet_trio"]
    recv = subprocess.Popen(
        [
            *in_ns(r_ns, *python, "receive", "-o", str(inbox), "--timeout", "90", "--json"),
            *("--count=1", "--from", s_server.jid(s_user)),
        ],
        env=cli_env(tmp, r_server, r_user),
        cwd=tmp,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        start = time.monotonic()
        sent = subprocess.run(
            [
                *in_ns(s_ns, *python, "send", str(src), "--to", r_server.jid(r_user)),
                *("--json", "--wait", "60"),
            ],
            env=cli_env(tmp, s_server, s_user),
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        out, err = recv.communicate(timeout=max(5.0, 120 - (time.monotonic() - start)))
    finally:
        recv.kill()
        recv.wait()
    assert sent.returncode == 0, sent.stderr
    assert recv.returncode == 0, err
    assert (inbox / src.name).read_bytes() == src.read_bytes()
    return one_json(sent.stdout), one_json(out)


def test_jet_omemo_both_directions_between_two_hosts(
    two_hosts: TwoHosts, tmp_path: Path, xmpp_ca: trustme.CA
) -> None:
    if find_prosody() is None:
        missing_server("prosody is not installed (apt-get install prosody lua-unbound)")
    if not have_lua_unbound():  # else Prosody would ask the system's resolvers
        missing_server("federation tests need lua-unbound (apt-get install lua-unbound)")
    dns_at = f"{ADDR_A}@53"
    a = PrivateProsody(
        tmp_path / "a",
        xmpp_ca,
        users=("alice",),
        domain="a.test",
        s2s_dns=dns_at,
        remote_contacts=("bob@b.test",),
        host=ADDR_A,
        netns=two_hosts.ns_a,
    )
    b = PrivateProsody(
        tmp_path / "b",
        xmpp_ca,
        users=("bob",),
        domain="b.test",
        s2s_dns=dns_at,
        remote_contacts=("alice@a.test",),
        host=ADDR_B,
        netns=two_hosts.ns_b,
    )
    dns: subprocess.Popen[str] | None = None
    try:
        a_info, b_info = a.start(), b.start()
        records = [
            ("_xmpp-server._tcp.a.test", "SRV", f"0 0 {a.s2s_port} a.test."),
            ("_xmpp-server._tcp.b.test", "SRV", f"0 0 {b.s2s_port} b.test."),
            ("a.test", "A", ADDR_A),
            ("b.test", "A", ADDR_B),
        ]
        dns = subprocess.Popen(
            in_ns(two_hosts.ns_a, sys.executable, "-m", "tests.integration._dns")
            + ["--host", ADDR_A, "--port", "53"]
            + [arg for record in records for arg in ("--record", *record)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert dns.stdout is not None
        assert "port" in json.loads(dns.stdout.readline())

        src = tmp_path / "outbox" / "payload.bin"
        src.parent.mkdir()
        src.write_bytes(os.urandom(300_000))
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        alice = (two_hosts.ns_a, a_info, "alice")
        bob = (two_hosts.ns_b, b_info, "bob")
        for direction, (sender, receiver) in (("a2b", (alice, bob)), ("b2a", (bob, alice))):
            sent, got = transfer(tmp_path / direction, src, sender, receiver)
            assert sent["envelope"] == got["envelope"] == OMEMO2, direction
            assert sent["sha256"] == got["sha256"] == digest
            assert got["hash_verified"] is True
            # SOCKS5: direct between the hosts, or through either server's proxy65
            assert got["transport"] in ("s5b-direct", "s5b-proxy"), got
    finally:
        queries: list[list[str]] = []
        if dns is not None:
            out, _ = dns.communicate(input="", timeout=10)
            queries = json.loads(out.splitlines()[-1])["queries"] if out.strip() else []
        a.stop()
        b.stop()
    # Each server found the other through the test's DNS server (SRV, then the address).
    assert ["_xmpp-server._tcp.b.test.", "SRV"] in queries
    assert ["_xmpp-server._tcp.a.test.", "SRV"] in queries
    for server, remote in ((a, "b.test"), (b, "a.test")):
        log = server.log_since(0)
        assert f"SASL EXTERNAL with {remote} succeeded" in log
        assert f"Outgoing s2s connection {server.domain}->{remote} complete" in log
