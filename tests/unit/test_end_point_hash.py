"""tls-server-end-point (RFC 5929 4.1) read from the certificate's DER without cryptography's
x509 module, checked against that module for each signature algorithm."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from jet_trio._xmpp.negotiation import _end_point_hash, _signature_oid


def _cert(key: object, algo: hashes.HashAlgorithm | None, pss: bool = False) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.org")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if pss:
        assert algo is not None
        pad = padding.PSS(padding.MGF1(algo), padding.PSS.DIGEST_LENGTH)
        cert = builder.sign(key, algo, rsa_padding=pad)  # type: ignore[arg-type]
    else:
        cert = builder.sign(key, algo)  # type: ignore[arg-type]
    return cert.public_bytes(Encoding.DER)


def _expected(der: bytes) -> bytes:
    cert = x509.load_der_x509_certificate(der)
    algo = cert.signature_hash_algorithm
    if algo is None or algo.name in ("md5", "sha1"):
        algo = hashes.SHA256()
    h = hashes.Hash(algo)
    h.update(der)
    return h.finalize()


RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC = ec.generate_private_key(ec.SECP256R1())


@pytest.mark.parametrize(
    ("key", "algo", "pss"),
    [
        (RSA, hashes.SHA256(), False),
        (RSA, hashes.SHA384(), False),
        (RSA, hashes.SHA512(), False),
        (RSA, hashes.SHA256(), True),  # RSASSA-PSS: the hash is in the parameters
        (EC, hashes.SHA256(), False),
        (EC, hashes.SHA384(), False),
        (EC, hashes.SHA512(), False),
    ],
    ids=["rsa-sha256", "rsa-sha384", "rsa-sha512", "rsa-pss", "ec-256", "ec-384", "ec-512"],
)
def test_end_point_hash_matches_cryptography(
    key: object, algo: hashes.HashAlgorithm, pss: bool
) -> None:
    der = _cert(key, algo, pss)
    assert _end_point_hash(der) == _expected(der)


def test_ed25519_falls_back_to_sha256() -> None:
    der = _cert(ed25519.Ed25519PrivateKey.generate(), None)
    assert _end_point_hash(der) == _expected(der)


@pytest.mark.parametrize("der", [b"", b"\x30", b"\x30\x85\x00\x00\x00\x00\x01", b"\x04\x00"])
def test_malformed_certificates_raise_value_error(der: bytes) -> None:
    with pytest.raises(ValueError):
        _signature_oid(der)
    with pytest.raises(ValueError):
        _end_point_hash(der)


def test_common_certificates_need_no_x509_module(tmp_path: object) -> None:
    """The login's channel binding must not import cryptography's x509 module (~25 ms)."""
    import subprocess
    import sys

    der = _cert(EC, hashes.SHA256())
    code = (
        "import sys; from jet_trio._xmpp.negotiation import _end_point_hash; "
        f"_end_point_hash(bytes.fromhex({der.hex()!r})); "
        "print('cryptography.x509' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
