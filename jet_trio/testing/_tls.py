"""Throwaway certificates for tests (trustme, a test dependency, imported lazily)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TestTLS:
    """A server context for :func:`~jet_trio.testing.serve` and what clients need to trust it."""

    __test__ = False  # not a pytest test class

    #: The server's context (its certificate for the domain and key).
    server_context: ssl.SSLContext
    #: A client context that trusts the throwaway CA (verification on).
    client_context: ssl.SSLContext
    #: The CA certificate (PEM).
    ca_pem: bytes
    #: Where the CA certificate was written, when ``make_tls`` was given ``ca_file``.
    ca_file: Path | None
    #: The server certificate (DER), for ``serve(tls_certificate=...)`` (channel binding).
    certificate_der: bytes = b""


def make_tls(domain: str = "localhost", *, ca_file: str | Path | None = None) -> TestTLS:
    """Issue a certificate for ``domain`` from a fresh test CA.

    With ``ca_file``, the CA certificate is also written there (for clients taking a file).
    """
    try:
        import trustme
    except ImportError as exc:
        raise RuntimeError(
            "jet_trio.testing.make_tls needs the 'trustme' package (pip install jet-trio[test])"
        ) from exc
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf = ca.issue_cert(domain)
    leaf.configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    path = None
    if ca_file is not None:
        path = Path(ca_file)
        ca.cert_pem.write_to_path(str(path))
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    return TestTLS(server_context, client_context, ca.cert_pem.bytes(), path, der)
