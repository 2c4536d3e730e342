"""The client against the in-process server: direct TLS, plaintext refusal, login errors."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.lowlevel

import jet_trio
from jet_trio import open_client
from jet_trio._xmpp.stanza import MESSAGE, E, make_iq
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
                    security=jet_trio.INSECURE_TEST_ONLY,
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


BODY = "{jabber:client}body"


async def test_server_drops_a_client_that_stops_reading() -> None:
    """Backpressure on the test server: a client that stops reading (its reader is held by
    an inline iq handler that never returns) is disconnected with ``resource-constraint``
    once ``max_queued`` bytes wait for it, instead of the server buffering without bound."""
    tls = make_tls("localhost")
    opts: dict[str, Any] = {"ssl_context": tls.client_context, "mechanisms": ["PLAIN"]}
    stuck = trio.Event()

    async def hold_the_reader(iq: Any) -> None:
        stuck.set()
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with serve(
            "localhost",
            tls=tls.server_context,
            accounts={"alice": "pw", "bob": "pw"},
            max_queued=1 << 20,
        ) as server:
            kw = {"host": server.host, "port": server.port, **opts}
            async with (
                open_client("alice@localhost/a", "pw", **kw) as alice,
                trio.open_nursery() as nursery,
            ):

                async def bob() -> None:
                    with trio.CancelScope() as scope:
                        async with open_client("bob@localhost/b", "pw", **kw) as b:
                            b.register_inline_iq_handler("get", "{urn:test}hold", hold_the_reader)
                            bob_up.set()
                            await trio.sleep_forever()
                    assert scope.cancelled_caught

                bob_up = trio.Event()
                nursery.start_soon(bob)
                await bob_up.wait()
                await alice.send(make_iq("get", E("{urn:test}hold"), to="bob@localhost/b"))
                await stuck.wait()
                body = "x" * 65536
                for _ in range(600):  # ~39 MB: more than kernel buffers and max_queued
                    if not server.connected_resources("bob"):
                        break
                    msg = E(MESSAGE, {"to": "bob@localhost/b"}, E(BODY, text=body))
                    await alice.send(msg)
                    await trio.lowlevel.checkpoint()
                assert server.connected_resources("bob") == []
                assert "resource-constraint" in server.stats.stream_errors
                assert await alice.ping() >= 0  # the server itself is fine
                nursery.cancel_scope.cancel()
