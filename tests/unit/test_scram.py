"""The SCRAM client (RFC 5802, RFC 7677): the RFCs' test vectors, scramp's server as an oracle
(both algorithms, with and without channel binding, names and passwords SASLprep maps), and
every malformed or hostile server message refused with a typed error."""

from __future__ import annotations

import base64
import os

import pytest
import scramp
import scramp.utils

from jet_trio._xmpp.scram import MAX_ITERATIONS, ScramClient, ScramError, saslprep


def test_rfc5802_sha1_example() -> None:
    client = ScramClient("SCRAM-SHA-1", "user", "pencil", nonce="fyko+d2lbbFgONRv9qkxdawL")
    assert client.client_first() == "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
    final = client.server_first(
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
    )
    assert final == (
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
    )
    client.server_final("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")


def test_rfc7677_sha256_example() -> None:
    client = ScramClient("SCRAM-SHA-256", "user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    assert client.client_first() == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    final = client.server_first(
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    assert final == (
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    client.server_final("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


NAMES = ["user", "Ünïcødé", "a=b,c", "x" * 200, "IX", "ﬁ"]  # "ﬁ" maps to "fi" (NFKC)
PASSWORDS = ["pencil", "pässwörd ", "I\u00adX", "\u2003space\u2003", "p,=;'\"", "ключ" * 10]


def _exchange(mechanism: str, user: str, password: str, binding: bool, login_as: str) -> None:
    """Log ``login_as`` in to a scramp server that knows ``user`` with ``password``."""
    base = mechanism.removesuffix("-PLUS")
    cb = ("tls-server-end-point", os.urandom(32)) if binding else None
    server_mech = scramp.ScramMechanism(mechanism if binding else base)
    info = server_mech.make_auth_info(password, iteration_count=4096)
    known = scramp.utils.saslprep(user)

    def auth_fn(name: str) -> object:
        if name != known:
            raise scramp.ScramException("unknown user")
        return info

    server = server_mech.make_server(auth_fn, channel_binding=cb)
    client = ScramClient(mechanism if binding else base, login_as, password, channel_binding=cb)
    server.set_client_first(client.client_first())
    final = client.server_first(server.get_server_first())
    server.set_client_final(final)
    client.server_final(server.get_server_final())


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"])
@pytest.mark.parametrize("binding", [False, True])
def test_scramp_server_accepts_our_proofs_and_we_verify_its(mechanism: str, binding: bool) -> None:
    for user, password in zip(NAMES, PASSWORDS, strict=True):
        _exchange(mechanism, user, password, binding, user)


def test_scramp_server_refuses_a_wrong_password() -> None:
    server_mech = scramp.ScramMechanism("SCRAM-SHA-256")
    info = server_mech.make_auth_info("right", iteration_count=4096)
    server = server_mech.make_server(lambda _: info)
    client = ScramClient("SCRAM-SHA-256", "user", "wrong")
    server.set_client_first(client.client_first())
    final = client.server_first(server.get_server_first())
    with pytest.raises(scramp.ScramException):
        server.set_client_final(final)
    with pytest.raises(ScramError, match="refused: invalid-proof"):
        client.server_final(server.get_server_final())


def test_binding_the_server_did_not_offer_is_flagged() -> None:
    """With binding data but a plain mechanism, the GS2 flag is 'y': a server that supports
    binding (scramp with the -PLUS mechanism available) refuses it as a downgrade."""
    cb = ("tls-exporter", os.urandom(32))
    client = ScramClient("SCRAM-SHA-256", "user", "pencil", channel_binding=cb)
    assert client.client_first().startswith("y,,n=user,r=")
    plus = ScramClient("SCRAM-SHA-256-PLUS", "user", "pencil", channel_binding=cb)
    assert plus.client_first().startswith("p=tls-exporter,,n=user,r=")


def test_our_saslprep_is_scramps() -> None:
    samples = [
        *NAMES,
        *PASSWORDS,
        "",
        "\u0627\u0031\u0628",  # RandALCat at both ends: allowed
        "\u0627\u0031",  # ends neutral: refused
        "\u0627a\u0628",  # mixes L and R: refused
        "\u0007",  # control: refused
        "\ue000",  # private use: refused
        "\u0221",  # unassigned in Unicode 3.2: refused
        "🔑",  # unassigned in Unicode 3.2 too
        "a\u200bb",  # zero width space: mapped to nothing
    ]
    for text in samples:
        try:
            expected = scramp.utils.saslprep(text)
        except scramp.ScramException:
            with pytest.raises(ScramError):
                saslprep(text)
        else:
            assert saslprep(text) == expected, repr(text)


NONCE = "abcdefghijklmnop"
SALT = base64.b64encode(b"salt").decode()


def started(mechanism: str = "SCRAM-SHA-256") -> ScramClient:
    client = ScramClient(mechanism, "user", "pencil", nonce=NONCE)
    client.client_first()
    return client


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("e=unknown-user", "refused: unknown-user"),
        (f"m=ext,r={NONCE}x,s={SALT},i=4096", "extension"),
        (f"r=other{NONCE},s={SALT},i=4096", "does not extend ours"),
        (f"r={NONCE},s={SALT},i=4096", "does not extend ours"),
        (f"r={NONCE}x,s=not*base64,i=4096", "salt is not valid base64"),
        (f"r={NONCE}x,s=,i=4096", "empty salt"),
        (f"r={NONCE}x,s={SALT},i=0", "iterations"),
        (f"r={NONCE}x,s={SALT},i={MAX_ITERATIONS + 1}", "iterations"),
        (f"r={NONCE}x,s={SALT},i=99999999999999", "not a number"),
        (f"r={NONCE}x,s={SALT},i=-1", "not a number"),
        (f"r={NONCE}x,s={SALT},i=\uff14\uff10\uff19\uff16", "not a number"),  # full-width digits
        (f"s={SALT},r={NONCE}x,i=4096", "malformed"),
        (f"r={NONCE}x,s={SALT}", "malformed"),
        ("", "malformed"),
        ("garbage", "malformed"),
        (f"r={NONCE}x,s={SALT},i=4096," + "a" * 20_000, "too long"),
    ],
)
def test_bad_server_first_is_refused(message: str, error: str) -> None:
    with pytest.raises(ScramError, match=error):
        started().server_first(message)


def test_server_first_may_carry_extensions_after_the_count() -> None:
    """XEP-0474 puts its h= attribute after i=."""
    final = started().server_first(f"r={NONCE}x,s={SALT},i=4096,h=abcd")
    assert final.startswith(f"c=biws,r={NONCE}x,p=")


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("v=" + base64.b64encode(b"\0" * 32).decode(), "signature does not match"),
        ("v=***", "not valid base64"),
        ("e=other-error", "refused: other-error"),
        ("x=1", "malformed"),
        ("", "malformed"),
    ],
)
def test_bad_server_final_is_refused(message: str, error: str) -> None:
    client = started()
    client.server_first(f"r={NONCE}x,s={SALT},i=4096")
    with pytest.raises(ScramError, match=error):
        client.server_final(message)


def test_messages_out_of_order_are_refused() -> None:
    client = ScramClient("SCRAM-SHA-1", "user", "pencil")
    with pytest.raises(ScramError):
        client.server_first(f"r={NONCE}x,s={SALT},i=4096")
    with pytest.raises(ScramError):
        ScramClient("SCRAM-SHA-1", "user", "pencil").server_final("v=AAAA")
    client = started()
    with pytest.raises(ScramError):
        client.client_first()


def test_bad_arguments() -> None:
    with pytest.raises(ScramError, match="needs channel binding"):
        ScramClient("SCRAM-SHA-256-PLUS", "user", "pencil")
    with pytest.raises(ScramError, match="unknown SCRAM mechanism"):
        ScramClient("SCRAM-MD5", "user", "pencil")
    with pytest.raises(ScramError, match="user name is empty"):
        ScramClient("SCRAM-SHA-1", "\u200b", "pencil")
    with pytest.raises(ScramError, match="password"):
        ScramClient("SCRAM-SHA-1", "user", "\u0007")
