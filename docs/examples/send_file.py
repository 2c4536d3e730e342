"""Send one file: ``python send_file.py FILE RECIPIENT [SECONDS]``.

The account comes from ``JET_TRIO_ACCOUNT`` and ``JET_TRIO_PASSWORD``; ``JET_TRIO_SERVER``
(``host:port``) and ``JET_TRIO_CA_FILE`` are optional (SRV lookup and the system's CAs
otherwise). The file is encrypted with OMEMO (jet-trio-omemo), which runs for the whole
connection; ``encrypt="auto"`` picks the strongest form the recipient supports (OMEMO 2 over
legacy OMEMO). The recipient has SECONDS (default 120) to accept or decline.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio
from jet_trio_omemo import open_omemo  # pip install ./plugins/jet-trio-omemo

import jet_trio

DATA_DIR = Path(os.environ.get("JET_TRIO_DATA_DIR", "~/.local/share/jet-trio")).expanduser()


async def main(path: str, recipient: str, accept_timeout: float = 120) -> int:
    server = os.environ.get("JET_TRIO_SERVER")
    host, _, port = server.rpartition(":") if server else ("", "", "")
    try:
        async with (
            jet_trio.open_client(
                os.environ["JET_TRIO_ACCOUNT"],
                os.environ["JET_TRIO_PASSWORD"],
                host=host or None,
                port=int(port) if port else None,
                ca_file=os.environ.get("JET_TRIO_CA_FILE"),
            ) as client,
            # OMEMO keys and sessions of this account, kept between runs.
            open_omemo(client, DATA_DIR / str(client.jid.bare)),
            jet_trio.open_file_transfer(client) as ft,
        ):
            with trio.fail_after(30):
                await client.wait_available(recipient)

            def progress(done: int, total: int) -> None:
                print(f"\r{done}/{total} bytes", end="", file=sys.stderr)

            result = await ft.send_file(
                path, recipient, encrypt="auto", progress=progress, accept_timeout=accept_timeout
            )
    except jet_trio.TransferDeclined:
        print("\nthe recipient declined the file", file=sys.stderr)
        return 1
    except jet_trio.TransferTimeout as exc:  # no answer in time (the offer was withdrawn)
        print(f"\nno answer: {exc}", file=sys.stderr)
        return 1
    except jet_trio.EncryptionFailed as exc:  # encryption failed: nothing was sent in the clear
        print(f"\nencryption failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"\nsent {result.name} ({result.size} bytes) with {result.envelope} over {result.transport}"
    )
    print(f"encryption: {result.choice}")  # which envelope and cipher, and why
    return 0


if __name__ == "__main__":
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 120
    sys.exit(trio.run(main, sys.argv[1], sys.argv[2], timeout))
