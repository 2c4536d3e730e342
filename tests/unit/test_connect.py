"""Server address resolution (SRV, RFC 6120 3.2 / XEP-0368) and connection errors; no network."""

from __future__ import annotations

import socket
from typing import Any

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import pytest
import trio

from jet_trio import ConnectionFailed, DNSError
from jet_trio._xmpp import connect as _connect
from jet_trio._xmpp.connect import _open_tcp, _resolve, _srv_targets, _Target


class FakeResolver:
    """Answers SRV queries from a table (a stand-in for the DNS library, not for a server)."""

    def __init__(self, table: dict[str, list[str] | type[Exception]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(self, name: str, rdtype: str) -> list[Any]:
        self.asked.append(name)
        answer = self.table.get(name, dns.resolver.NXDOMAIN)
        if isinstance(answer, type):
            raise answer()
        return [dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SRV, a) for a in answer]


async def test_srv_sorted_by_priority_then_weight() -> None:
    resolver = FakeResolver(
        {
            "_xmpp-client._tcp.example.org": [
                "20 0 5222 backup.example.org.",
                "10 10 5222 light.example.org.",
                "10 90 5223 heavy.example.org.",
            ]
        }
    )
    targets = await _srv_targets("example.org", "starttls", resolver)  # type: ignore[arg-type]
    assert [(t.host, t.port) for t in targets] == [
        ("heavy.example.org", 5223),
        ("light.example.org", 5222),
        ("backup.example.org", 5222),
    ]
    assert resolver.asked == ["_xmpp-client._tcp.example.org"]


async def test_direct_tls_prefers_xmpps_records() -> None:
    resolver = FakeResolver(
        {
            "_xmpps-client._tcp.example.org": ["5 0 443 tls.example.org."],
            "_xmpp-client._tcp.example.org": ["1 0 5222 plain.example.org."],
        }
    )
    targets = await _srv_targets("example.org", "direct", resolver)  # type: ignore[arg-type]
    assert targets[0] == _Target("tls.example.org", 443, True)
    assert targets[1] == _Target("plain.example.org", 5222, False)


async def test_dot_target_means_no_service() -> None:
    resolver = FakeResolver({"_xmpp-client._tcp.example.org": ["0 0 0 ."]})
    assert await _srv_targets("example.org", "starttls", resolver) == []  # type: ignore[arg-type]


async def test_dns_failure_is_dns_error() -> None:
    resolver = FakeResolver({"_xmpp-client._tcp.example.org": dns.exception.Timeout})
    with pytest.raises(DNSError, match=r"DNS lookup for example\.org failed"):
        await _srv_targets("example.org", "starttls", resolver)  # type: ignore[arg-type]


async def test_no_srv_falls_back_to_the_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    async def none(*args: object) -> list[_Target]:
        return []

    monkeypatch.setattr(_connect, "_srv_targets", none)
    assert await _resolve("example.org", None, None, "starttls") == [
        _Target("example.org", 5222, False)
    ]
    assert await _resolve("example.org", None, None, "direct") == [
        _Target("example.org", 5223, True)
    ]
    assert await _resolve("example.org", "127.0.0.1", 1234, "starttls") == [
        _Target("127.0.0.1", 1234, False)
    ]


async def test_unresolvable_host_is_dns_error(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fail(host: str, port: int) -> trio.SocketStream:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(trio, "open_tcp_stream", fail)
    with pytest.raises(DNSError, match="cannot resolve"):
        await _open_tcp(_Target("nowhere.example", 5222, False))


async def test_refused_connection_is_connection_failed() -> None:
    with trio.socket.socket() as s:
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionFailed, match=f"127.0.0.1:{port}") as info:
        await _open_tcp(_Target("127.0.0.1", port, False))
    assert not isinstance(info.value, DNSError)
