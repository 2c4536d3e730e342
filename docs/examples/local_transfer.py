"""Send a file between two accounts of an in-process test server (needs ``trustme``).

Run it with ``python docs/examples/local_transfer.py``. Uses the insecure stub envelope, so
that it works without an OMEMO plugin: the file is AES-GCM encrypted, but the key is not.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import trio

import jet_trio
from jet_trio.testing import make_tls, serve, serve_proxy65

STUB = "urn:xmpp:encryption:stub:0"


async def main() -> None:
    tls = make_tls("localhost")  # a throwaway CA and a certificate for "localhost"
    accounts = {"alice": "alice-password", "bob": "bob-password"}
    async with (
        serve_proxy65() as proxy,
        serve("localhost", tls=tls.server_context, accounts=accounts, proxy65=proxy) as server,
    ):
        login = dict(host=server.host, port=server.port, ssl_context=tls.client_context)
        async with (
            jet_trio.open_client("alice@localhost/laptop", "alice-password", **login) as alice,
            jet_trio.open_client("bob@localhost/desktop", "bob-password", **login) as bob,
            jet_trio.open_file_transfer(alice, allow_stub_envelope=True) as alice_ft,
            jet_trio.open_file_transfer(bob, allow_stub_envelope=True) as bob_ft,
        ):
            with trio.fail_after(10):
                await alice.wait_available(bob.jid)  # alice sees bob's presence

            with tempfile.TemporaryDirectory() as tmp:
                src = Path(tmp) / "hello.bin"
                src.write_bytes(os.urandom(100_000))
                inbox = Path(tmp) / "inbox"
                inbox.mkdir()

                async def receive() -> None:
                    offer = await bob_ft.next_offer()
                    print(f"bob got an offer: {offer}")
                    result = await offer.accept(inbox)
                    print(f"bob stored {result.path} (hash verified: {result.hash_verified})")

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(receive)
                    sent = await alice_ft.send_file(src, bob.jid, encrypt=STUB)
                print(
                    f"alice sent {sent.size} bytes over {sent.transport} with {sent.cipher} "
                    f"in {sent.seconds:.3f} s"
                )


if __name__ == "__main__":
    trio.run(main)
