"""Dino on one host, jet-trio on another: JET-OMEMO both ways over a direct SOCKS5 connection.

The lab of the other interop tests split across machines (issue 12, case 8). Three network
namespaces on one LAN (a bridge in a fourth), every name with the prefix ``n4d``:

=========  ==================  ============================================================
host       address             runs
=========  ==================  ============================================================
``xmpp``   10.14.1.1           Prosody for ``lan.test`` (c2s 5222, proxy65 5000)
``ha``     10.14.1.2           Xvfb, a session bus and Dino 0.4.2 as ``alice@lan.test/dino``
``hb``     10.14.1.3           the real ``jet-trio`` command as ``bob@lan.test``
=========  ==================  ============================================================

Dino finds the server as a user's client would: no SRV record (the namespace's resolver
points at an empty loopback), so the domain's address (``/etc/netns/n4dha/hosts``) on port
5222; it trusts the test CA through the namespace's own copy of ``/etc/ssl``. Xvfb, the
session bus, Dino and the tools that drive it (``gdbus``, ``xdotool``) all run inside ``ha``:
the X server and the bus listen on abstract sockets, which exist per network namespace.

Each direction asserts the transport both ends report (``s5b-direct``) and, from the
``--debug`` log of jet-trio and Dino's ``--print-xmpp`` output, which candidate carried the
bytes: an address of the other host, never the proxy and never loopback.

Run with ``bash tests/interop/run.sh`` (outside the lab namespace, as root); elsewhere the
tests skip with the reason, with ``CI=true`` they fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from tests.integration._servers import ServerUnavailable, missing_server
from tests.netns._peer import Peer, Ran
from tests.netns._topology import Host, NetnsUnavailable, Topology, netns_problem

from ._lab import (
    DINO_ENCRYPTION_OMEMO,
    Dino,
    DinoAccount,
    Lab,
    LabProsody,
    LabUnavailable,
    Xvfb,
    dino_version_problem,
    missing_tools,
    wait_log,
)

pytestmark = [pytest.mark.interop, pytest.mark.netns]

PREFIX = "n4d"
DOMAIN = "lan.test"
SERVER_ADDR = "10.14.1.1"
DINO_ADDR = "10.14.1.2"
JET_ADDR = "10.14.1.3"
DINO_BARE = f"alice@{DOMAIN}"
DINO_JID = f"{DINO_BARE}/dino"
JET_BARE = f"bob@{DOMAIN}"
OLDMEMO = "eu.siacs.conversations.axolotl"
AES128_GCM = "urn:xmpp:ciphers:aes-128-gcm-nopadding"
SIZE = 300_000


@dataclass
class SplitLab:
    topology: Topology
    lab: Lab
    dino_host: Host
    jet_host: Host
    jet: Peer

    @property
    def dino(self) -> Dino:
        return self.lab.dino


def _trust_ca_in(host: Host, ca: trustme.CA) -> None:
    """Give ``host`` its own ``/etc/ssl`` (bind-mounted by ``ip netns exec``) trusting ``ca``."""
    own = Path("/etc/netns") / host.ns / "ssl"
    shutil.copytree("/etc/ssl", own, symlinks=True)
    bundle = own / "certs" / "ca-certificates.crt"
    bundle.write_bytes(bundle.read_bytes() + b"\n" + ca.cert_pem.bytes())


@pytest.fixture(scope="module")
def split_lab() -> Iterator[SplitLab]:
    missing = missing_tools()
    if missing:
        missing_server("Dino lab unavailable: missing " + ", ".join(missing))
    problem = dino_version_problem() or netns_problem()
    if problem:
        missing_server(f"Dino lab unavailable: {problem}")
    if sorted(os.listdir("/sys/class/net")) == ["lo"]:
        missing_server(
            "the multi-host Dino test builds its own namespaces: run it outside the lab "
            "namespace (bash tests/interop/run.sh does)"
        )
    try:
        topology = Topology(PREFIX)
    except NetnsUnavailable as exc:
        missing_server(f"network namespaces unavailable: {exc}")
    keep = os.environ.get("JET_TRIO_INTEROP_DIR")
    base = Path(keep) / "multihost" if keep else Path(tempfile.mkdtemp(prefix="jet-trio-n4d-"))
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    ca = trustme.CA()
    prosody = xvfb = dino = None
    try:
        switch = topology.lan("lan")
        server_host = topology.host("xmpp")
        dino_host = topology.host("ha")
        jet_host = topology.host("hb")
        server_host.attach(switch, f"{SERVER_ADDR}/24")
        dino_host.attach(switch, f"{DINO_ADDR}/24")
        jet_host.attach(switch, f"{JET_ADDR}/24")
        # GLib reports "online" (and Dino connects) only with a default route.
        dino_host.route("default", "via", SERVER_ADDR)
        dino_host.hosts_file({DOMAIN: SERVER_ADDR})
        _trust_ca_in(dino_host, ca)
        prosody = LabProsody(
            base / "prosody", ca, domain=DOMAIN, host=SERVER_ADDR, netns=server_host.ns
        )
        info = prosody.start()
        xvfb = Xvfb(base / "xvfb.log", netns=dino_host.ns)
        display = xvfb.start()
        dino = Dino(
            base / "home-alice",
            display,
            DinoAccount(DINO_BARE, prosody.accounts["alice"]),
            netns=dino_host.ns,
        )
        dino.provision()
        lab = Lab(prosody, dino, base)
        lab.start_dino()
        jet = Peer(jet_host, "bob", info, base / "home-bob")
        yield SplitLab(topology, lab, dino_host, jet_host, jet)
    except (LabUnavailable, ServerUnavailable) as exc:
        pytest.fail(f"could not bring the split Dino lab up: {exc}", pytrace=False)
    finally:
        if dino is not None:
            dino.stop()
        if xvfb is not None:
            xvfb.stop()
        if prosody is not None:
            prosody.stop()
        topology.close()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


# -- helpers ----------------------------------------------------------------------------------

#: A chat message from bob, so that Dino has a conversation with him (Dino auto-accepts files
#: only then, and shows its attach button only in a conversation). jet-trio's command has no
#: chat command: the library sends it, from bob's host.
_HELLO = """
import os, sys, trio
from lxml import etree
from jet_trio import open_client

async def main():
    jid, to = sys.argv[1], sys.argv[2]
    host, _, port = os.environ["JET_TRIO_SERVER"].rpartition(":")
    with trio.fail_after(30):
        async with open_client(jid + "/hello", os.environ["JET_TRIO_PASSWORD"], host=host,
                               port=int(port), ca_file=os.environ["JET_TRIO_CA_FILE"]) as client:
            ns = "jabber:client"
            msg = etree.Element("{%s}message" % ns, {"to": to, "type": "chat", "id": "hello1"},
                                nsmap={None: ns})
            etree.SubElement(msg, "{%s}body" % ns).text = "hello from jet-trio (multi-host)"
            await client.send(msg)
            await trio.sleep(0.5)

trio.run(main)
"""


async def _run_python(peer: Peer, code: str, *args: str, limit: float = 45) -> Ran:
    with trio.fail_after(limit):
        proc = await trio.run_process(
            peer.host.command(sys.executable, "-c", code, *args),
            env=peer.env,
            stdin=b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return Ran(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def _one_json(ran: Ran) -> dict[str, Any]:
    lines = [json.loads(line) for line in ran.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, (ran.stdout, ran.stderr[-6000:])
    assert isinstance(lines[0], dict)
    return lines[0]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dino_out_since(dino: Dino, offset: int) -> str:
    with dino.out_path.open("rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


#: Dino's ``--print-xmpp`` writes names with their namespace: ``<{urn:...:s5b:1}:candidate
#: {urn:...:s5b:1}:host='10.14.1.2' ...>``; jet-trio's log writes plain XML.
_NS = r"(?:\{[^}]*\}:)?"
_CANDIDATE = re.compile(rf"<{_NS}candidate\s[^>]*>")
_USED = re.compile(rf"<{_NS}candidate-used\s[^>]*>")
_ATTR = re.compile(rf"{_NS}([\w-]+)=['\"]([^'\"]*)['\"]")


def s5b_candidates(xml: str) -> list[dict[str, str]]:
    """Every SOCKS5 candidate element (its attributes) in a stretch of XML log."""
    return [dict(_ATTR.findall(m[0])) for m in _CANDIDATE.finditer(xml)]


def candidates_used(xml: str) -> list[str]:
    """The ``cid`` of every ``candidate-used`` in a stretch of XML log."""
    return [dict(_ATTR.findall(m[0])).get("cid", "") for m in _USED.finditer(xml)]


def nominated(xml: str) -> dict[str, str]:
    """The candidate that carried the bytes, from Dino's ``--print-xmpp`` output of one session
    (both sides' candidates and both ``candidate-used``; XEP-0260: the one of higher priority
    wins)."""
    candidates = {c["cid"]: c for c in s5b_candidates(xml) if "cid" in c}
    used = [candidates[cid] for cid in candidates_used(xml) if cid in candidates]
    assert used, f"no candidate-used for a known candidate in Dino's log:\n{xml[-6000:]}"
    return max(used, key=lambda c: int(c.get("priority", "0")))


def _report(direction: str, result: dict[str, Any], xml: str, took: float) -> None:
    best = nominated(xml)
    dino = [
        f"{c.get('type')} {c['host']}" for c in s5b_candidates(xml) if c.get("jid", "") == DINO_JID
    ]
    proxies = sorted({c["host"] for c in s5b_candidates(xml) if c.get("type") == "proxy"})
    print(
        f"\n{direction}: {result['transport']} through {best.get('type')} candidate "
        f"{best['host']}:{best.get('port')} ({float(result['seconds']):.2f} s transfer, "
        f"{took:.2f} s with log-in); Dino offered {', '.join(dino)}; proxies offered: {proxies}"
    )


def assert_direct_between_hosts(xml: str) -> None:
    best = nominated(xml)
    assert best.get("type", "direct") == "direct", best
    assert best["host"] in (DINO_ADDR, JET_ADDR), best
    # Dino offers its LAN address (and its IPv6 link-local one with the interface as scope).
    dino = [c["host"] for c in s5b_candidates(xml) if c.get("jid") == DINO_JID]
    assert DINO_ADDR in dino, dino
    # jet-trio (default --direct-host auto) offers its LAN address, not loopback.
    jet = {
        c["host"]
        for c in s5b_candidates(xml)
        if c.get("jid", "").startswith(JET_BARE + "/") and c.get("type", "direct") == "direct"
    }
    assert jet == {JET_ADDR}, jet


# -- the tests --------------------------------------------------------------------------------


async def _prepare_omemo_conversation(split: SplitLab) -> None:
    """bob's OMEMO device exists and is published (the same data directory for both tests),
    Dino has a conversation with bob set to OMEMO (database, then a restart of Dino)."""
    dino = split.dino
    if dino.conversation_id(JET_BARE) is None:
        hello = await _run_python(split.jet, _HELLO, split.jet.jid, DINO_BARE)
        assert hello.returncode == 0, hello.stderr
        await trio.to_thread.run_sync(dino.wait_conversation, JET_BARE)
    # `fingerprints` sets OMEMO up: bob's device list and bundles get published before any
    # transfer, so Dino knows bob's device when the first envelope arrives.
    shown = await split.jet.run(["fingerprints"])
    assert shown.returncode == 0, shown.stderr
    await trio.to_thread.run_sync(
        split.lab.set_conversation_encryption, JET_BARE, DINO_ENCRYPTION_OMEMO
    )


async def test_jet_trio_sends_to_dino_on_another_host(split_lab: SplitLab, tmp_path: Path) -> None:
    """jet-trio (hb) -> Dino (ha), JET-OMEMO (legacy OMEMO, AES-128-GCM), direct S5B."""
    await _prepare_omemo_conversation(split_lab)
    dino = split_lab.dino
    name = f"jet-to-dino-{os.urandom(4).hex()}.bin"
    src = tmp_path / name
    src.write_bytes(os.urandom(SIZE))
    offset = _size(dino.out_path)
    started = time.monotonic()
    sent = await split_lab.jet.run(
        ["send", "--debug", "--json", str(src), "--to", f"{DINO_BARE}/dino",
         "--envelope", OLDMEMO, "--cipher", AES128_GCM]
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr[-8000:]
    stored = await trio.to_thread.run_sync(dino.wait_received, name, SIZE, 20.0)
    took = time.monotonic() - started
    result = _one_json(sent)
    assert result["envelope"] == OLDMEMO
    assert result["transport"] == "s5b-direct", sent.stderr[-8000:]
    assert _sha256(stored) == _sha256(src)
    xml = _dino_out_since(dino, offset)
    assert_direct_between_hosts(xml)
    _report("jet-trio -> Dino", result, xml, took)


async def test_dino_sends_to_jet_trio_on_another_host(split_lab: SplitLab, tmp_path: Path) -> None:
    """Dino (ha) -> jet-trio (hb), JET-OMEMO, direct S5B: Dino's UI sends the file."""
    await _prepare_omemo_conversation(split_lab)
    dino = split_lab.dino
    name = f"dino-to-jet-{os.urandom(4).hex()}.bin"
    src = split_lab.lab.base / name  # Dino's file chooser must see it: not in a 0700 dir
    src.write_bytes(os.urandom(SIZE))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    offset = _size(dino.out_path)
    log_offset = split_lab.lab.prosody.log_size()
    results: dict[str, Ran] = {}
    started = time.monotonic()

    async def receive() -> None:
        results["r"] = await split_lab.jet.run(
            ["receive", "--debug", "--json", "--output-dir", str(inbox), "--timeout", "90",
             "--from", DINO_BARE],
            limit=120,
        )  # fmt: skip

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        # Dino shows the attach button once it saw bob's file-transfer caps.
        prosody_log = split_lab.lab.prosody.log_path
        assert await trio.to_thread.run_sync(
            wait_log, prosody_log, f"Authenticated as {JET_BARE}", log_offset, 30.0
        ), "jet-trio receive did not log in"
        await trio.sleep(3)
        await trio.to_thread.run_sync(dino.ui_send_file, src, JET_BARE)
    received = results["r"]
    took = time.monotonic() - started
    assert received.returncode == 0, received.stderr[-8000:]
    result = _one_json(received)
    assert result["envelope"] == OLDMEMO, "Dino sent the file unencrypted"
    assert result["transport"] == "s5b-direct", received.stderr[-8000:]
    assert Path(result["path"]).read_bytes() == src.read_bytes()
    xml = _dino_out_since(dino, offset)
    assert_direct_between_hosts(xml)
    _report("Dino -> jet-trio", result, xml, took)
