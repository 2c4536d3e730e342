"""Throwaway TLS for ``jet-trio demo``: a private CA and a server certificate, in memory.

Made with ``cryptography`` (a runtime dependency already) rather than ``trustme`` (a test
dependency), so that the demo runs from a plain ``pip install jet-trio``. The CA's key never
leaves this process; the server's key and certificate are written to a private temporary
directory only because :meth:`ssl.SSLContext.load_cert_chain` reads files.

:class:`ThrowawayCA` is the one throwaway CA of the project: the tests that need a certificate
``trustme`` does not make (a name in the subject CN only) use it too.
"""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DemoTLS", "ThrowawayCA", "make_demo_tls"]


@dataclass(frozen=True)
class DemoTLS:
    server_context: ssl.SSLContext
    client_context: ssl.SSLContext
    ca_pem: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "jet-trio demo"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


class ThrowawayCA:
    """A private CA valid for a day, whose key never leaves this process."""

    def __init__(self, common_name: str = "jet-trio demo CA") -> None:
        now = datetime.datetime.now(datetime.UTC)
        self._valid = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1))
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = _name(common_name)
        cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._valid[0])
            .not_valid_after(self._valid[1])
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        #: The CA certificate (PEM), for clients to trust.
        self.ca_pem = cert.public_bytes(serialization.Encoding.PEM)

    def server_context(
        self, common_name: str, alt_names: Sequence[str], workdir: Path
    ) -> ssl.SSLContext:
        """A server context with a certificate for ``common_name`` naming ``alt_names`` as
        DNS subject alternative names (none: the name is in the subject CN only, which TLS
        clients rightly refuse). The key passes through a private file in ``workdir``."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._valid[0])
            .not_valid_after(self._valid[1])
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if alt_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in alt_names]),
                critical=False,
            )
        cert = builder.sign(self._key, hashes.SHA256())
        chain = workdir / "server.pem"
        chain.touch(mode=0o600)
        chain.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            + cert.public_bytes(serialization.Encoding.PEM)
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(str(chain))
        finally:
            chain.unlink()
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA (verification on)."""
        return ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))


def make_demo_tls(domain: str, workdir: Path) -> DemoTLS:
    """A CA and a certificate for ``domain`` (and ``proxy.<domain>``); contexts for both ends."""
    ca = ThrowawayCA()
    server = ca.server_context(domain, [domain, f"proxy.{domain}"], workdir)
    return DemoTLS(server, ca.client_context(), ca.ca_pem)
