"""Channel binding (SCRAM -PLUS), XEP-0440 and XEP-0474 against the in-process server, and a
relaying TLS proxy holding a certificate the client trusts (the attack channel binding stops)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trustme

import jet_trio
from jet_trio import open_client
from jet_trio.testing import Server, serve

PW = "s3cret-pw"


def tls12(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class Pki:
    """One test CA; the server and the attacker's proxy both hold a certificate from it."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.leaf = self.ca.issue_cert("localhost")
        self.der = ssl.PEM_cert_to_DER_cert(self.leaf.cert_chain_pems[0].bytes().decode())

    def server_context(self, *, max_tls12: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.leaf.configure_cert(ctx)
        return tls12(ctx) if max_tls12 else ctx

    def client_context(self, *, max_tls12: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return tls12(ctx) if max_tls12 else ctx

    def proxy_context(self, *, max_tls12: bool = False) -> ssl.SSLContext:
        """The attacker's own certificate for the same name, from the trusted CA."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("localhost").configure_cert(ctx)
        return tls12(ctx) if max_tls12 else ctx


async def login(server: Server, pki: Pki, **kw: object) -> tuple[str | None, str | None]:
    opts: dict[str, object] = {"ssl_context": pki.client_context()}
    opts.update(kw)
    with trio.fail_after(10):
        async with open_client(
            "alice@localhost/cb",
            PW,
            host=server.host,
            port=server.port,
            presence=False,
            **opts,  # type: ignore[arg-type]
        ) as client:
            return client.sasl_mechanism, client.channel_binding


async def test_plus_with_tls_server_end_point_on_tls13() -> None:
    pki = Pki()
    async with serve(
        tls=pki.server_context(), tls_certificate=pki.der, accounts={"alice": PW}
    ) as server:
        assert await login(server, pki) == ("SCRAM-SHA-256-PLUS", "tls-server-end-point")
        assert server.stats.logins == [("SCRAM-SHA-256-PLUS", "tls-server-end-point")]


async def test_plus_prefers_tls_unique_on_tls12() -> None:
    pki = Pki()
    async with serve(
        tls=pki.server_context(max_tls12=True), tls_certificate=pki.der, accounts={"alice": PW}
    ) as server:
        got = await login(server, pki, ssl_context=pki.client_context(max_tls12=True))
        assert got == ("SCRAM-SHA-256-PLUS", "tls-unique")


async def test_xep0440_list_is_respected() -> None:
    pki = Pki()
    async with serve(
        tls=pki.server_context(max_tls12=True),
        tls_certificate=pki.der,
        binding_types=["tls-server-end-point"],
        accounts={"alice": PW},
    ) as server:
        got = await login(server, pki, ssl_context=pki.client_context(max_tls12=True))
        assert got == ("SCRAM-SHA-256-PLUS", "tls-server-end-point")


async def test_without_xep0440_tls12_defaults_to_tls_unique() -> None:
    pki = Pki()
    async with serve(
        tls=pki.server_context(max_tls12=True),
        binding_types=["tls-unique"],
        announce_bindings=False,
        accounts={"alice": PW},
    ) as server:
        got = await login(server, pki, ssl_context=pki.client_context(max_tls12=True))
        assert got == ("SCRAM-SHA-256-PLUS", "tls-unique")


async def test_server_without_binding_gets_plain_scram() -> None:
    pki = Pki()
    async with serve(tls=pki.server_context(), binding_types=[], accounts={"alice": PW}) as server:
        assert await login(server, pki) == ("SCRAM-SHA-256", None)


async def test_plain_refused_when_asked() -> None:
    pki = Pki()
    async with serve(tls=pki.server_context(), accounts={"alice": PW}) as server:
        assert (await login(server, pki, mechanisms=["PLAIN"]))[0] == "PLAIN"
        with pytest.raises(jet_trio.NoCommonMechanism):
            await login(server, pki, mechanisms=["PLAIN"], allow_plain=False)
        assert server.stats.logins == [("PLAIN", None)]


# -- a relaying TLS proxy ------------------------------------------------------------------------

Rewrite = Callable[[bytes], bytes]


@asynccontextmanager
async def tls_relay(
    upstream: Server, pki: Pki, *, to_client: Rewrite = lambda b: b, max_tls12: bool = False
) -> AsyncIterator[tuple[int, list[bytes]]]:
    """Terminate the client's direct TLS with the attacker's trusted certificate, open TLS to
    the server, relay the plaintext both ways (``to_client`` may rewrite what the server says).
    Yields the port and everything the client sent, as the attacker saw it."""
    seen: list[bytes] = []
    server_ctx = pki.proxy_context(max_tls12=max_tls12)

    async def pump(src: trio.abc.Stream, dst: trio.abc.Stream, edit: Rewrite | None) -> None:
        while data := bytes(await src.receive_some(65536)):
            if edit is None:
                seen.append(data)
            await dst.send_all(edit(data) if edit is not None else data)
        await dst.aclose()

    async def handle(tcp: trio.SocketStream) -> None:
        client = trio.SSLStream(tcp, server_ctx, server_side=True)
        up_tcp = await trio.open_tcp_stream(upstream.host, upstream.port)
        up = trio.SSLStream(up_tcp, pki.client_context(), server_hostname="localhost")
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pump, client, up, None)
                nursery.start_soon(pump, up, client, to_client)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(up)
            await trio.aclose_forcefully(client)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1], seen
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def direct_server(
    pki: Pki, *, max_tls12: bool = False, **kw: object
) -> AsyncIterator[Server]:
    async with serve(
        tls=pki.server_context(max_tls12=max_tls12),
        direct_tls=True,
        tls_certificate=pki.der,
        accounts={"alice": PW},
        **kw,  # type: ignore[arg-type]
    ) as server:
        yield server


async def proxied_login(server: Server, pki: Pki, port: int) -> None:
    with trio.fail_after(10):
        async with open_client(
            "alice@localhost",
            PW,
            host="127.0.0.1",
            port=port,
            security="direct",
            ssl_context=pki.client_context(),
            presence=False,
        ):
            pass


async def test_relaying_tls_proxy_fails_the_login_with_channel_binding() -> None:
    pki = Pki()
    async with direct_server(pki) as server, tls_relay(server, pki) as (port, seen):
        with pytest.raises(jet_trio.AuthenticationError):
            await proxied_login(server, pki, port)
        assert server.stats.logins == []
        assert any(b"<auth" in s for s in seen)  # relayed, yet useless to the attacker


async def test_relaying_tls_proxy_wins_without_channel_binding() -> None:
    """The same proxy against a server that cannot bind: the attack the binding prevents."""
    pki = Pki()
    async with (
        direct_server(pki, binding_types=[]) as server,
        tls_relay(server, pki) as (port, _),
    ):
        await proxied_login(server, pki, port)
        assert server.stats.logins == [("SCRAM-SHA-256", None)]


def strip(*names: bytes) -> Rewrite:
    def edit(data: bytes) -> bytes:
        for name in names:
            data = data.replace(b"<mechanism>" + name + b"</mechanism>", b"")
        return data

    return edit


strip_plus = strip(b"SCRAM-SHA-256-PLUS", b"SCRAM-SHA-1-PLUS")


async def test_proxy_downgrading_the_mechanism_is_caught_by_xep0474() -> None:
    pki = Pki()
    weaker = strip(b"SCRAM-SHA-256-PLUS", b"SCRAM-SHA-256")
    async with direct_server(pki) as server, tls_relay(server, pki, to_client=weaker) as (port, _):
        with pytest.raises(jet_trio.DowngradeDetected, match="XEP-0474"):
            await proxied_login(server, pki, port)
        assert server.stats.logins == []


async def test_proxy_downgrading_the_binding_type_is_caught_by_xep0474() -> None:
    pki = Pki()

    def only_end_point(data: bytes) -> bytes:
        return data.replace(b"<channel-binding type='tls-unique'/>", b"").replace(
            b'<channel-binding type="tls-unique"/>', b""
        )

    async with (
        serve(
            tls=pki.server_context(max_tls12=True),
            tls_certificate=pki.der,
            accounts={"alice": PW},
        ) as server,
    ):
        # Sanity: the rewrite targets what the server really sends.
        assert await login(server, pki, ssl_context=pki.client_context(max_tls12=True)) == (
            "SCRAM-SHA-256-PLUS",
            "tls-unique",
        )
    async with (
        direct_server(pki, max_tls12=True) as server,
        tls_relay(server, pki, to_client=only_end_point, max_tls12=True) as (port, _),
    ):
        with pytest.raises(jet_trio.DowngradeDetected, match="XEP-0474"):
            await proxied_login(server, pki, port)


async def test_proxy_stripping_plus_without_xep0474_fails_on_the_y_flag() -> None:
    pki = Pki()
    async with (
        direct_server(pki, downgrade_protection=False) as server,
        tls_relay(server, pki, to_client=strip_plus) as (port, _),
    ):
        with pytest.raises(jet_trio.AuthenticationError):
            await proxied_login(server, pki, port)
        assert server.stats.logins == []
