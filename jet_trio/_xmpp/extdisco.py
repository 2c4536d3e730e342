"""External service discovery (XEP-0215, ``urn:xmpp:extdisco:2``): STUN/TURN servers, sans-IO
parsing plus one query helper.

Prosody (``mod_external_services``, or ``mod_turn_external``) and ejabberd (``mod_stun_disco``)
answer ``<services xmlns='urn:xmpp:extdisco:2'/>`` sent to the account's domain with the
servers, TURN ones with time-limited credentials. Conversations asks the same way before it
opens a WebRTC data channel. What a server sends is bounded and validated here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from lxml import etree

from .._errors import RemoteProtocolError
from .stanza import E

if TYPE_CHECKING:
    from .client import Client

__all__ = [
    "EXTDISCO",
    "MAX_SERVICES",
    "ExternalService",
    "ExternalServiceError",
    "build_services_query",
    "discover_external_services",
    "parse_services",
]

EXTDISCO: Final = "urn:xmpp:extdisco:2"
#: Services accepted from one answer; a server lists a handful.
MAX_SERVICES: Final = 32
_HOST: Final = re.compile(r"[A-Za-z0-9.\-]{1,253}")


class ExternalServiceError(RemoteProtocolError):
    """The server's external-services answer is malformed."""


@dataclass(frozen=True, slots=True)
class ExternalService:
    """One ``<service/>``: ``type`` is ``stun``/``turn``/``stuns``/``turns`` (others are kept
    but unused by the WebRTC transport); ``transport`` ``udp`` or ``tcp``."""

    type: str
    host: str
    port: int | None = None
    transport: str | None = None
    username: str | None = None
    password: str | None = None
    expires: str | None = None
    restricted: bool = False

    @property
    def ice_url(self) -> str | None:
        """The ICE server URL (``turn:host:port?transport=udp``), ``None`` if not STUN/TURN."""
        if self.type not in ("stun", "stuns", "turn", "turns"):
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        url = f"{self.type}:{host}" + (f":{self.port}" if self.port else "")
        if self.type.startswith("turn") and self.transport:
            url += f"?transport={self.transport}"
        return url


def _check_host(host: str) -> str:
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if not _HOST.fullmatch(host):
        raise ExternalServiceError(f"service host {host[:60]!r} is not a host name or address")
    return host


def build_services_query(service_type: str | None = None) -> etree._Element:
    """The ``<services/>`` payload of the iq get (optionally only ``service_type``)."""
    return E(f"{{{EXTDISCO}}}services", {"type": service_type})


def parse_services(el: etree._Element) -> tuple[ExternalService, ...]:
    """Parse a ``<services/>`` answer; raises :class:`ExternalServiceError`."""
    if el.tag != f"{{{EXTDISCO}}}services":
        raise ExternalServiceError(f"not an extdisco services element: {str(el.tag)[:80]!r}")
    found = el.findall(f"{{{EXTDISCO}}}service")
    if len(found) > MAX_SERVICES:
        raise ExternalServiceError(f"{len(found)} services (at most {MAX_SERVICES})")
    services = []
    for s in found:
        kind = s.get("type") or ""
        host = s.get("host") or ""
        if not kind or not host or len(kind) > 32:
            raise ExternalServiceError("a service lacks its type or host")
        port_text = s.get("port")
        port = None
        if port_text is not None:
            if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ExternalServiceError(f"service port {port_text[:10]!r} is not in 1..65535")
            port = int(port_text)
        transport = s.get("transport")
        if transport is not None and transport not in ("udp", "tcp"):
            raise ExternalServiceError(f"service transport {transport[:10]!r} is not udp/tcp")
        username, password = s.get("username"), s.get("password")
        for value in (username, password):
            if value is not None and len(value) > 1024:
                raise ExternalServiceError("a service credential is longer than 1024 characters")
        services.append(
            ExternalService(
                type=kind,
                host=_check_host(host),
                port=port,
                transport=transport,
                username=username,
                password=password,
                expires=s.get("expires"),
                restricted=(s.get("restricted") or "").lower() in ("1", "true"),
            )
        )
    return tuple(services)


async def discover_external_services(
    client: Client, service_type: str | None = None
) -> tuple[ExternalService, ...]:
    """Ask the account's server for its external services (bound the wait with a cancel scope).

    Raises :class:`~jet_trio._xmpp.stanza.StanzaError` when the server does not support
    XEP-0215 (``service-unavailable``/``feature-not-implemented``).
    """
    result = await client.request("get", build_services_query(service_type), client.jid.domain)
    if result is None:
        return ()
    return parse_services(result)
