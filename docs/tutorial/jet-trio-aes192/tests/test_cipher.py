from jet_trio_aes192 import AES192GCM

from jet_trio.testing import check_cipher


def test_conformance() -> None:
    check_cipher(AES192GCM())
