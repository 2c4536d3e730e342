"""The plugin passes jet-trio's cipher conformance kit."""

from __future__ import annotations

from jet_trio.testing import check_cipher

from jet_trio_chacha20 import CHACHA20_POLY1305


def test_chacha20_poly1305_conforms() -> None:
    check_cipher(CHACHA20_POLY1305)
