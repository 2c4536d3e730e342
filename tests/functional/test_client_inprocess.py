"""The client against the in-process server: direct TLS, plaintext refusal, login errors."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import jet_trio
from jet_trio import open_client
from jet_trio.testing import make_tls, serve


async def test_direct_tls_login_and_ping() -> None:
    tls = make_tls("localhost")
    with trio.fail_after(10):
        async with (
            serve(
                "localhost", tls=tls.server_context, direct_tls=True, accounts={"alice": "pw"}
            ) as server,
            open_client(
                "alice@localhost/d",
                "pw",
                host=server.host,
                port=server.port,
                security="direct",
                ssl_context=tls.client_context,
            ) as alice,
        ):
            assert await alice.ping() >= 0
            assert alice.jid == jet_trio.JID("alice@localhost/d")


async def test_starttls_required_but_server_has_none() -> None:
    with trio.fail_after(10):
        async with serve("localhost", accounts={"alice": "pw"}) as server:
            with pytest.raises(jet_trio.TLSError, match="does not offer STARTTLS"):
                async with open_client("alice@localhost", "pw", host=server.host, port=server.port):
                    pass


async def test_plain_not_sent_without_tls() -> None:
    with trio.fail_after(10):
        async with serve(
            "localhost", accounts={"alice": "pw"}, allow_plain_without_tls=True
        ) as server:
            with pytest.raises(jet_trio.NoCommonMechanism, match="refusing to send"):
                async with open_client(
                    "alice@localhost",
                    "pw",
                    host=server.host,
                    port=server.port,
                    security="none",
                    mechanisms=["PLAIN"],
                ):
                    pass


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
async def test_each_mechanism_and_wrong_password(mechanism: str) -> None:
    tls = make_tls("localhost")
    with trio.fail_after(10):
        async with serve("localhost", tls=tls.server_context, accounts={"bob": "pw"}) as server:
            opts: dict[str, Any] = {
                "host": server.host,
                "port": server.port,
                "ssl_context": tls.client_context,
            }
            async with open_client("bob@localhost", "pw", mechanisms=[mechanism], **opts) as bob:
                assert bob.jid.bare == jet_trio.JID("bob@localhost")
            with pytest.raises(jet_trio.AuthenticationError, match="wrong password"):
                async with open_client("bob@localhost", "nope", mechanisms=[mechanism], **opts):
                    pass


async def test_kicked_client_sees_connection_lost() -> None:
    tls = make_tls("localhost")
    with trio.fail_after(10):
        async with serve("localhost", tls=tls.server_context, accounts={"bob": "pw"}) as server:
            with pytest.raises(jet_trio.ConnectionLost):
                async with open_client(
                    "bob@localhost/k",
                    "pw",
                    host=server.host,
                    port=server.port,
                    ssl_context=tls.client_context,
                ) as bob:
                    await bob.ping()
                    server.kick("bob@localhost/k")
                    await trio.sleep_forever()
