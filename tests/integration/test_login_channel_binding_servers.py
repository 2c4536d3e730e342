"""Channel binding against the real servers: what Debian's Prosody 0.12 and ejabberd 23.01
offer, and that jet-trio logs in with the strongest binding each allows."""

from __future__ import annotations

import ssl

import pytest
import trio

from jet_trio import open_client

from ._servers import ServerInfo

pytestmark = pytest.mark.integration


def context(server: ServerInfo, *, max_tls12: bool) -> ssl.SSLContext:
    ctx = server.ssl_context()
    if max_tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def login(server: ServerInfo, *, max_tls12: bool) -> tuple[str | None, str | None]:
    with trio.fail_after(15):
        async with open_client(
            server.jid("alice"),
            server.password("alice"),
            host=server.host,
            port=server.port,
            ssl_context=context(server, max_tls12=max_tls12),
            presence=False,
        ) as client:
            assert await client.ping() >= 0
            return client.sasl_mechanism, client.channel_binding


async def test_prosody_binds_with_tls_unique_over_tls12(prosody: ServerInfo) -> None:
    """Prosody 0.12 offers SCRAM-SHA-1-PLUS (tls-unique only, no XEP-0440) on TLS 1.2."""
    assert await login(prosody, max_tls12=True) == ("SCRAM-SHA-1-PLUS", "tls-unique")


async def test_prosody_over_tls13_offers_no_binding(prosody: ServerInfo) -> None:
    """On TLS 1.3 Prosody 0.12 has no binding (tls-unique is undefined there, it has no
    tls-exporter): SCRAM with the "y" flag."""
    assert await login(prosody, max_tls12=False) == ("SCRAM-SHA-1", None)


async def test_ejabberd_binds_with_tls_unique_over_tls12(ejabberd: ServerInfo) -> None:
    """ejabberd 23.01 offers SCRAM-SHA-1-PLUS (tls-unique only, no XEP-0440, no XEP-0474)."""
    assert await login(ejabberd, max_tls12=True) == ("SCRAM-SHA-1-PLUS", "tls-unique")


async def test_ejabberd_over_tls13_logs_in_without_binding(ejabberd: ServerInfo) -> None:
    """ejabberd 23.01 offers -PLUS over TLS 1.3 too, with tls-unique (undefined there, RFC
    9266) and without XEP-0440: jet-trio cannot compute RFC 9266's default (tls-exporter), so it
    says "n" (no binding) instead of guessing a type, and the login works."""
    assert await login(ejabberd, max_tls12=False) == ("SCRAM-SHA-1", None)
