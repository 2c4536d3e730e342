"""The library's login against misbehaving servers on loopback: every stage bounded, the TLS
context and the certificate's names checked, nothing sent to a server that is not verified."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio
import trustme

import jet_trio
from jet_trio import open_client
from jet_trio._cli.tls import ThrowawayCA
from jet_trio.testing import make_tls, serve


@asynccontextmanager
async def stalling_server(behaviour: str, seen: list[bytes]) -> AsyncIterator[int]:
    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            if behaviour == "spaces":
                while True:
                    await trio.sleep(0.3)
                    await stream.send_all(b" ")
            if behaviour == "header-then-trickle":
                await stream.send_all(
                    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                    b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
                )
                while True:
                    await trio.sleep(0.3)
                    await stream.send_all(b" ")
            while data := await stream.receive_some(65536):
                seen.append(bytes(data))

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("behaviour", "security", "stage"),
    [
        ("silent", "starttls", "stream header"),
        ("spaces", "starttls", "stream header"),
        ("header-then-trickle", "starttls", "stream features"),
        ("silent", "direct", "TLS handshake"),
    ],
)
async def test_each_stage_is_bounded(behaviour: str, security: str, stage: str) -> None:
    seen: list[bytes] = []
    async with stalling_server(behaviour, seen) as port:
        start = trio.current_time()
        with trio.fail_after(20), pytest.raises(jet_trio.LoginTimeout) as info:
            async with open_client(
                "alice@localhost",
                "pw",
                host="127.0.0.1",
                port=port,
                security=security,  # type: ignore[arg-type]
                login_timeout=6,
                stage_timeout=1.5,
            ):
                pass
        assert trio.current_time() - start < 6
        assert info.value.stage == stage
        assert info.value.server == f"127.0.0.1:{port}"
        assert isinstance(info.value, jet_trio.ConnectionFailed)
        assert b"alice" not in b"".join(seen) and b"<auth" not in b"".join(seen)


async def test_login_timeout_bounds_the_whole_login() -> None:
    seen: list[bytes] = []
    async with stalling_server("header-then-trickle", seen) as port:
        start = trio.current_time()
        with pytest.raises(jet_trio.LoginTimeout):
            async with open_client(
                "alice@localhost", "pw", host="127.0.0.1", port=port, login_timeout=1
            ):
                pass
        assert trio.current_time() - start < 3


@pytest.mark.parametrize("bad", [0, -1, float("nan")])
async def test_bad_timeouts_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        async with open_client("alice@localhost", "pw", host="127.0.0.1", login_timeout=bad):
            pass


async def test_security_none_is_gone() -> None:
    with pytest.raises(ValueError, match="security"):
        async with open_client("alice@localhost", "pw", security="none"):  # type: ignore[arg-type]
            pass


async def test_context_that_does_not_verify_gets_no_login() -> None:
    tls = make_tls("localhost")
    lax = ssl.create_default_context()
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_NONE
    async with serve(tls=tls.server_context, accounts={"alice": "pw"}) as server:
        with trio.fail_after(10), pytest.raises(jet_trio.TLSError, match="did not verify"):
            async with open_client(
                "alice@localhost", "pw", host=server.host, port=server.port, ssl_context=lax
            ):
                pass
        assert server.stats.auth_successes == server.stats.auth_failures == 0


def cn_only_certificate(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server certificate naming ``localhost`` only in its subject CN (no SAN), from a CA
    the client trusts (the project's one throwaway CA; trustme always writes a SAN)."""
    ca = ThrowawayCA("test CA")
    return ca.server_context("localhost", [], tmp_path), ca.client_context()


@pytest.mark.parametrize("given_context", [False, True])
async def test_certificate_with_the_name_only_in_the_cn_is_refused(
    tmp_path: Path, given_context: bool
) -> None:
    server_ctx, client_ctx = cn_only_certificate(tmp_path)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ssl.DER_cert_to_PEM_cert(client_ctx.get_ca_certs(True)[0]).encode())
    opts: dict[str, object] = (
        {"ssl_context": client_ctx} if given_context else {"ca_file": str(ca_file)}
    )
    async with serve(tls=server_ctx, accounts={"alice": "pw"}) as server:
        with trio.fail_after(10), pytest.raises(jet_trio.TLSError, match="not trusted"):
            async with open_client(
                "alice@localhost",
                "pw",
                host=server.host,
                port=server.port,
                **opts,  # type: ignore[arg-type]
            ):
                pass
        assert server.stats.auth_successes == server.stats.auth_failures == 0


async def test_trustme_certificates_have_sans_and_work() -> None:
    """The counterpart: the same kind of login with a SAN certificate succeeds."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with (
        serve(tls=server_ctx, accounts={"alice": "pw"}) as server,
        open_client(
            "alice@localhost", "pw", host=server.host, port=server.port, ssl_context=client_ctx
        ) as client,
    ):
        assert client.jid.bare == jet_trio.JID("alice@localhost")
