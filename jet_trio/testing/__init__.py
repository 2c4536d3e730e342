"""Test doubles speaking real protocols over loopback: an in-process XMPP server, a XEP-0065
SOCKS5 proxy, and throwaway TLS certificates::

    async with serve_proxy65() as proxy, serve(accounts={"alice": "pw"}, proxy65=proxy) as server:
        ...  # connect clients to server.host, server.port as server.jid("alice")
"""

from ._conformance import ConformanceError, EnvelopeFactory, check_cipher, check_envelope_method
from ._proxy65 import ActivationError, Proxy65, serve_proxy65
from ._server import Proxy65Like, Server, ServerStats, serve
from ._tls import TestTLS, make_tls

__all__ = [
    "ActivationError",
    "ConformanceError",
    "EnvelopeFactory",
    "Proxy65",
    "Proxy65Like",
    "Server",
    "ServerStats",
    "TestTLS",
    "check_cipher",
    "check_envelope_method",
    "make_tls",
    "serve",
    "serve_proxy65",
]
