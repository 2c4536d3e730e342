"""A tiny authoritative DNS server on loopback for the federation tests.

Two test servers federating must find each other (``_xmpp-server._tcp.b.test`` SRV, then the
address of the target) without any outside DNS. Prosody resolves through libunbound; its
``unbound`` setting forwards every query to this server instead of the machine's resolvers, so
no lookup leaves the machine. It answers from a fixed table: SRV and A records it holds, an
empty answer for other types of a known name, NXDOMAIN for everything else. Every question is
recorded (:attr:`queries`) so a test can show which lookups were made.

Plain threads and a blocking UDP socket, like the rest of the server fixtures. Run as a
program (``python -m tests.integration._dns --record NAME TYPE DATA ...``) it serves until its
standard input closes, then prints the questions it was asked as JSON: that is how a test runs
it inside a network namespace.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

__all__ = ["LoopbackDNS", "Record"]


@dataclass(frozen=True)
class Record:
    """One resource record: ``name`` (absolute, with or without the final dot), type, data."""

    name: str
    type: str
    data: str
    ttl: int = 60


@dataclass
class LoopbackDNS:
    """Serves ``records`` on ``host``:``port`` (UDP) while running; start with :meth:`running`."""

    records: list[Record] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0
    queries: list[tuple[str, str]] = field(default_factory=list)
    _sock: socket.socket | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def add(self, name: str, type_: str, data: str) -> None:
        self.records.append(Record(name, type_, data))

    @property
    def forward(self) -> str:
        """The forwarder address in unbound's ``ip@port`` form."""
        return f"{self.host}@{self.port}"

    def answer(self, wire: bytes) -> bytes | None:
        """The response to one query message (``None`` for something that is not a query)."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # a malformed packet: no answer, as a real server would
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        for question in query.question:
            qname = question.name.to_text().lower()
            qtype = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((qname, qtype))
            known = [r for r in self.records if _absolute(r.name) == qname]
            if not known:
                response.set_rcode(dns.rcode.NXDOMAIN)
                continue
            for r in known:
                if r.type.upper() == qtype:
                    response.answer.append(
                        dns.rrset.from_text(qname, r.ttl, dns.rdataclass.IN, r.type, r.data)
                    )
        return response.to_wire()

    def _serve(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self.answer(wire)
            if reply is not None:
                with contextlib.suppress(OSError):
                    sock.sendto(reply, peer)

    @contextlib.contextmanager
    def running(self) -> Iterator[LoopbackDNS]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.host, self.port))
        sock.settimeout(0.1)
        self.port = int(sock.getsockname()[1])
        self._stop.clear()
        thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(5)
            sock.close()


def _absolute(name: str) -> str:
    return dns.name.from_text(name).to_text().lower()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a DNS server for tests, on one address")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--record", nargs=3, action="append", default=[])
    args = parser.parse_args(argv)
    server = LoopbackDNS([Record(*r) for r in args.record], args.host, args.port)
    with server.running():
        print(json.dumps({"port": server.port}), flush=True)
        sys.stdin.read()  # until the test closes our standard input
    print(json.dumps({"queries": server.queries}), flush=True)


if __name__ == "__main__":
    main()
