"""XEP-0215 external service discovery against a real Prosody (mod_external_services): the
STUN/TURN servers and TURN REST credentials the WebRTC transport is configured from."""

from __future__ import annotations

import hashlib
import hmac
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trustme

from jet_trio import open_client
from jet_trio._transports.webrtc import IceServer, ice_servers_from_services
from jet_trio._xmpp.extdisco import discover_external_services
from jet_trio._xmpp.stanza import StanzaError

from ._servers import (
    PrivateProsody,
    ProsodyFactory,
    ServerInfo,
    ServerUnavailable,
    lua_string,
    missing_server,
)

pytestmark = pytest.mark.integration

SECRET = "w4-extdisco-secret"

EXTERNAL_SERVICES = f"""
external_services = {{
    {{ type = "stun", transport = "udp", host = "198.51.100.1", port = 3478 }};
    {{ type = "turn", transport = "udp", host = "198.51.100.1", port = 3478,
       secret = {lua_string(SECRET)} }};
    {{ type = "ftp", host = "files.example", port = 21 }};
}}
"""


class ExtdiscoProsody(PrivateProsody):
    """A private Prosody with mod_external_services enabled."""

    def _write_config(self) -> None:
        super()._write_config()
        text = self.config_path.read_text(encoding="utf-8")
        enabled = "modules_enabled = { "
        assert enabled in text
        text = text.replace(enabled, enabled + '"external_services"; ', 1)
        self.config_path.write_text(text, encoding="utf-8")


@pytest.fixture
def extdisco_prosody(tmp_path: Path, xmpp_ca: trustme.CA) -> Iterator[ServerInfo]:
    try:
        server = ExtdiscoProsody(tmp_path / "prosody", xmpp_ca, extra_config=EXTERNAL_SERVICES)
    except ServerUnavailable as exc:
        missing_server(str(exc))
    try:
        yield server.start()
    finally:
        server.stop()


async def test_prosody_external_services_give_stun_and_turn(extdisco_prosody: ServerInfo) -> None:
    server = extdisco_prosody
    with trio.fail_after(20):
        async with open_client(
            server.jid("alice"), server.password("alice"), host=server.host,
            port=server.port, ca_file=server.ca_file,
        ) as client:  # fmt: skip
            services = await discover_external_services(client)
            turn_only = await discover_external_services(client, "turn")
    by_type = {s.type: s for s in services}
    assert set(by_type) == {"stun", "turn", "ftp"}
    assert [s.type for s in turn_only] == ["turn"]
    turn = by_type["turn"]
    assert turn.username is not None and turn.password is not None and turn.restricted
    # TURN REST API credentials, the form coturn's use-auth-secret checks.
    expected = hmac.new(SECRET.encode(), turn.username.encode(), hashlib.sha1).digest()
    assert turn.password == b64encode(expected).decode()
    assert ice_servers_from_services(services) == (
        IceServer(("stun:198.51.100.1:3478",)),
        IceServer(("turn:198.51.100.1:3478?transport=udp",), turn.username, turn.password),
    )


async def test_server_without_extdisco_gives_stanza_error(
    prosody_factory: ProsodyFactory,
) -> None:
    server = prosody_factory().info
    with trio.fail_after(20):
        async with open_client(
            server.jid("alice"), server.password("alice"), host=server.host,
            port=server.port, ca_file=server.ca_file,
        ) as client:  # fmt: skip
            with pytest.raises(StanzaError):
                await discover_external_services(client)
