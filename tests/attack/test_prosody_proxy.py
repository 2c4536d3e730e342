"""A relaying TLS proxy (its own process) in front of a real Prosody, holding a certificate for
the server's name from a CA the client trusts (a mis-issued certificate, a stolen key, a
company's interception CA). Channel binding makes Prosody refuse the relayed login."""

from __future__ import annotations

import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trustme

import jet_trio
from jet_trio import open_client
from tests.integration._servers import (
    PrivateProsody,
    ServerInfo,
    find_prosody,
    free_ports,
    missing_server,
    tcp_probe,
)

from .conftest import start_local, stop_local

pytestmark = pytest.mark.integration


@dataclass
class Relay:
    prosody: ServerInfo
    port: int
    log: Path

    def seen(self, direction: bytes) -> bytes:
        """What the attacker saw going one way (``>`` client to server, ``<`` back)."""
        lines = self.log.read_bytes().split(b"\n")
        return b"".join(line[2:] for line in lines if line.startswith(direction + b" "))


class DirectTLSProsody(PrivateProsody):
    """A private Prosody that also listens for direct TLS (XEP-0368) on ``direct_port``."""

    def __init__(self, base_dir: Path, ca: trustme.CA) -> None:
        super().__init__(base_dir, ca)
        (self.direct_port,) = free_ports(1)

    def _write_config(self) -> None:
        super()._write_config()
        text = self.config_path.read_text(encoding="utf-8")
        text = text.replace(
            "c2s_direct_tls_ports = { }", f"c2s_direct_tls_ports = {{ {self.direct_port} }}"
        )
        self.config_path.write_text(text, encoding="utf-8")


@pytest.fixture
def direct_tls_prosody(tmp_path: Path, xmpp_ca: trustme.CA) -> Iterator[ServerInfo]:
    if find_prosody() is None:
        missing_server("prosody is not installed (apt-get install prosody lua-unbound)")
    server = DirectTLSProsody(tmp_path / "prosody", xmpp_ca)
    try:
        info = server.start()
        deadline = time.monotonic() + 10
        while not tcp_probe(server.direct_port):
            if time.monotonic() > deadline:
                pytest.fail(f"Prosody's direct TLS port {server.direct_port} did not open")
            time.sleep(0.1)
        yield ServerInfo(**{**info.__dict__, "port": server.direct_port})
    finally:
        server.stop()


def start_relay(
    prosody: ServerInfo, ca: trustme.CA, tmp_path: Path, *flags: str
) -> tuple[subprocess.Popen[bytes], Relay]:
    leaf = ca.issue_cert("localhost")  # the attacker's own certificate, trusted by the client
    cert, key = tmp_path / "attacker.crt", tmp_path / "attacker.key"
    cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    log = tmp_path / "relay.log"
    (port,) = free_ports(1)
    proc = start_local(
        [
            "proxy",
            "--listen",
            f"127.0.0.1:{port}",
            "--upstream",
            f"127.0.0.1:{prosody.port}",
            "--cert",
            str(cert),
            "--key",
            str(key),
            "--ca",
            prosody.ca_file,
            "--log",
            str(log),
            *flags,
        ]
    )
    return proc, Relay(prosody, port, log)


@pytest.fixture
def relay_factory(
    direct_tls_prosody: ServerInfo, xmpp_ca: trustme.CA, tmp_path: Path
) -> Iterator[object]:
    procs: list[subprocess.Popen[bytes]] = []

    def make(*flags: str) -> Relay:
        proc, relay = start_relay(direct_tls_prosody, xmpp_ca, tmp_path, *flags)
        procs.append(proc)
        return relay

    yield make
    for proc in procs:
        stop_local(proc)


async def login_through(relay: Relay, *, max_tls12: bool) -> tuple[str | None, str | None]:
    ctx = relay.prosody.ssl_context()
    if max_tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with trio.fail_after(15):
        async with open_client(
            relay.prosody.jid("alice"),
            relay.prosody.password("alice"),
            host="127.0.0.1",
            port=relay.port,
            security="direct",
            ssl_context=ctx,
            presence=False,
        ) as client:
            return client.sasl_mechanism, client.channel_binding


async def test_direct_tls_prosody_binds_without_the_relay(direct_tls_prosody: ServerInfo) -> None:
    ctx = direct_tls_prosody.ssl_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with trio.fail_after(15):
        async with open_client(
            direct_tls_prosody.jid("alice"),
            direct_tls_prosody.password("alice"),
            host=direct_tls_prosody.host,
            port=direct_tls_prosody.port,
            security="direct",
            ssl_context=ctx,
            presence=False,
        ) as client:
            assert (client.sasl_mechanism, client.channel_binding) == (
                "SCRAM-SHA-1-PLUS",
                "tls-unique",
            )


async def test_relaying_tls_proxy_fails_the_login(relay_factory: object) -> None:
    relay = relay_factory("--client-max-tls12", "--upstream-max-tls12")  # type: ignore[operator]
    with pytest.raises(jet_trio.AuthenticationError, match=r"wrong password|failed"):
        await login_through(relay, max_tls12=True)
    to_server, to_client = relay.seen(b">"), relay.seen(b"<")
    assert b"SCRAM-SHA-1-PLUS" in to_server  # the bound exchange was relayed ...
    assert b"<success" not in to_client  # ... and Prosody refused it: no session to hijack
    assert b"<iq" not in to_server


async def test_stripping_plus_through_the_proxy_fails_on_the_y_flag(relay_factory: object) -> None:
    """The proxy cannot simply hide SCRAM-SHA-1-PLUS: the client then says "I could bind"
    (GS2 ``y``) and Prosody, which binds on this connection, refuses."""
    relay = relay_factory(  # type: ignore[operator]
        "--client-max-tls12", "--upstream-max-tls12", "--strip-plus"
    )
    with pytest.raises(jet_trio.AuthenticationError):
        await login_through(relay, max_tls12=True)
    assert b"SCRAM-SHA-1-PLUS" in relay.seen(b"<")  # Prosody offered it; the client never saw it
    assert b"<success" not in relay.seen(b"<")


async def test_limit_tls13_towards_the_client_defeats_binding(relay_factory: object) -> None:
    """The documented limit: with TLS 1.3 between client and proxy, the binding Prosody 0.12
    offers (tls-unique, no XEP-0440) cannot be used, and Python's ``ssl`` has no tls-exporter,
    so the client logs in unbound and the proxy wins. See docs/security.rst."""
    relay = relay_factory("--upstream-max-tls12")  # type: ignore[operator]
    assert await login_through(relay, max_tls12=False) == ("SCRAM-SHA-1", None)
    assert b"<success" in relay.seen(b"<")
