"""The attacker's programs, each run as its own process (inside a test's network namespace or on
loopback). Every one records what it received in a log file, so that tests can assert what the
attacker saw.

``python _attacker.py dns --listen ADDR:PORT --records FILE``
    A tiny UDP DNS server answering SRV and A queries from a JSON file
    (``{"srv": {name: [[priority, weight, port, target], ...]}, "a": {name: address}}``);
    other names get NXDOMAIN, other types an empty answer.
``python _attacker.py xmpp --listen ADDR:PORT --behaviour B --log FILE``
    A rogue XMPP server. Behaviours: ``plain-scram`` (answers the stream header with features
    offering SCRAM-SHA-1 and PLAIN but no STARTTLS, then waits for credentials), ``silent``
    (accepts and never sends a byte), ``pre-header-silent`` (sends the XML declaration, then
    nothing), ``trickle`` (sends a stream header, then one space every 2 s, never the features),
    ``reset`` (accepts and resets the connection at once).
``python _attacker.py proxy --listen ADDR:PORT --upstream HOST:PORT --cert PEM --key PEM
--ca PEM --log FILE [--client-max-tls12] [--upstream-max-tls12] [--strip-plus]``
    A relaying TLS proxy in front of a direct-TLS server: it holds a certificate the client
    trusts, terminates the client's TLS, opens its own TLS to the server and relays the
    plaintext both ways, logging it (``>`` client to server, ``<`` server to client).
    ``--strip-plus`` removes the SCRAM ``-PLUS`` mechanisms from what the server offers.

Each prints ``ready`` on standard output once it listens.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import ssl
import struct
from functools import partial
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import trio

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' from='example.test' id='rogue' "
    b"version='1.0'>"
)
PLAIN_FEATURES = (
    b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
    b"<mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms>"
    b"</stream:features>"
)


def split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


def ready() -> None:
    print("ready", flush=True)


# -- DNS -----------------------------------------------------------------------------------------


def run_dns(listen: str, records: Path) -> None:
    table: dict[str, Any] = json.loads(records.read_text())
    srv: dict[str, list[list[Any]]] = {k.lower().rstrip("."): v for k, v in table["srv"].items()}
    a: dict[str, str] = {k.lower().rstrip("."): v for k, v in table["a"].items()}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(split(listen))
    ready()
    while True:
        data, peer = sock.recvfrom(4096)
        try:
            query = dns.message.from_wire(data)
        except Exception:
            continue
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().lower().rstrip(".")
        known = name in srv or name in a
        if question.rdtype == dns.rdatatype.SRV and name in srv:
            texts = [f"{p} {w} {port} {target}" for p, w, port, target in srv[name]]
            response.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", "SRV", texts))
        elif question.rdtype == dns.rdatatype.A and name in a:
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", a[name]))
        elif not known:
            response.set_rcode(dns.rcode.NXDOMAIN)
        sock.sendto(response.to_wire(), peer)


# -- rogue XMPP servers --------------------------------------------------------------------------


class Log:
    def __init__(self, path: Path) -> None:
        self._file = path.open("ab", buffering=0)

    def write(self, tag: bytes, data: bytes) -> None:
        self._file.write(tag + data + b"\n")


async def run_xmpp(listen: str, behaviour: str, log: Log) -> None:
    async def record_all(stream: trio.abc.ReceiveStream) -> None:
        while data := await stream.receive_some(65536):
            log.write(b"> ", bytes(data))

    async def handle(stream: trio.SocketStream) -> None:
        log.write(b"* ", b"connection")
        if behaviour == "reset":
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            stream.socket.close()
            return
        try:
            async with stream, trio.open_nursery() as nursery:
                nursery.start_soon(record_all, stream)
                with trio.move_on_after(120):
                    if behaviour == "plain-scram":
                        await trio.sleep(0.2)  # the client's header first
                        await stream.send_all(HEADER + PLAIN_FEATURES)
                    elif behaviour == "pre-header-silent":
                        await stream.send_all(b"<?xml version='1.0'?>")
                    elif behaviour == "trickle":
                        await stream.send_all(HEADER)
                        while True:
                            await trio.sleep(2)
                            await stream.send_all(b" ")
                    await trio.sleep_forever()
                nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            log.write(b"* ", b"closed by the client")

    async with trio.open_nursery() as nursery:
        host, port = split(listen)
        await nursery.start(partial(trio.serve_tcp, handle, port, host=host))
        ready()


# -- relaying TLS proxy --------------------------------------------------------------------------


async def run_proxy(args: argparse.Namespace, log: Log) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(args.cert, args.key)
    client_ctx = ssl.create_default_context(cafile=args.ca)
    if args.client_max_tls12:
        server_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if args.upstream_max_tls12:
        client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    up_host, up_port = split(args.upstream)

    async def pump(src: trio.abc.Stream, dst: trio.abc.Stream, tag: bytes) -> None:
        while data := bytes(await src.receive_some(65536)):
            log.write(tag, data)
            if args.strip_plus and tag == b"< ":
                data = re.sub(rb"<mechanism>SCRAM-[A-Z0-9-]+-PLUS</mechanism>", b"", data)
            await dst.send_all(data)
        await dst.aclose()

    async def handle(tcp: trio.SocketStream) -> None:
        log.write(b"* ", b"connection")
        client = trio.SSLStream(tcp, server_ctx, server_side=True)
        up = trio.SSLStream(
            await trio.open_tcp_stream(up_host, up_port), client_ctx, server_hostname="localhost"
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pump, client, up, b"> ")
                nursery.start_soon(pump, up, client, b"< ")
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            log.write(b"* ", b"closed")
        finally:
            await trio.aclose_forcefully(up)
            await trio.aclose_forcefully(client)

    async with trio.open_nursery() as nursery:
        host, port = split(args.listen)
        await nursery.start(partial(trio.serve_tcp, handle, port, host=host))
        ready()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    d = sub.add_parser("dns")
    d.add_argument("--listen", required=True)
    d.add_argument("--records", type=Path, required=True)
    x = sub.add_parser("xmpp")
    x.add_argument("--listen", required=True)
    x.add_argument("--behaviour", required=True)
    x.add_argument("--log", type=Path, required=True)
    p = sub.add_parser("proxy")
    for name in ("--listen", "--upstream", "--cert", "--key", "--ca"):
        p.add_argument(name, required=True)
    p.add_argument("--log", type=Path, required=True)
    p.add_argument("--client-max-tls12", action="store_true")
    p.add_argument("--upstream-max-tls12", action="store_true")
    p.add_argument("--strip-plus", action="store_true")
    args = parser.parse_args()
    if args.mode == "dns":
        run_dns(args.listen, args.records)
    elif args.mode == "xmpp":
        trio.run(run_xmpp, args.listen, args.behaviour, Log(args.log))
    else:
        trio.run(run_proxy, args, Log(args.log))


if __name__ == "__main__":
    main()
