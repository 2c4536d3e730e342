"""Receive files into a directory until interrupted: ``python receive_files.py DIR``.

Same environment variables as ``send_file.py``. Accepts only encrypted offers from contacts
listed in ``ALLOWED`` (all, if empty), smaller than 1 GiB. A file whose name is taken (before
or during the transfer) is stored as ``name (1).ext``, ``name (2).ext``...: nothing is replaced.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio
from jet_trio_omemo import open_omemo  # pip install ./plugins/jet-trio-omemo

import jet_trio

DATA_DIR = Path(os.environ.get("JET_TRIO_DATA_DIR", "~/.local/share/jet-trio")).expanduser()

ALLOWED: set[str] = set()
MAX_SIZE = 1024**3


async def main(directory: str, count: int = 0) -> None:
    server = os.environ.get("JET_TRIO_SERVER")
    host, _, port = server.rpartition(":") if server else ("", "", "")
    async with (
        jet_trio.open_client(
            os.environ["JET_TRIO_ACCOUNT"],
            os.environ["JET_TRIO_PASSWORD"],
            host=host or None,
            port=int(port) if port else None,
            ca_file=os.environ.get("JET_TRIO_CA_FILE"),
        ) as client,
        # OMEMO keys and sessions of this account, kept between runs (or peers see a new device).
        open_omemo(client, DATA_DIR / str(client.jid.bare)),
        jet_trio.open_file_transfer(client) as ft,
    ):
        print(f"waiting for files as {client.jid}", flush=True)
        handled = 0
        async for offer in ft.incoming():
            if (
                not offer.encrypted
                or offer.size > MAX_SIZE
                or (ALLOWED and str(offer.peer.bare) not in ALLOWED)
            ):
                await offer.reject()
                continue
            # The sanitised name and the path the file would get, before accepting.
            wanted = offer.target(directory)
            if wanted.exists():
                print(f"{wanted.name} exists: storing {offer.safe_name!r} under a free name")
            try:
                result = await offer.accept(directory, rename=True)
            except (jet_trio.TransferError, OSError) as exc:  # the sender is told either way
                print(f"{offer.name} from {offer.peer} failed: {exc}", flush=True)
            else:
                print(f"received {result.path} from {result.peer} ({result.envelope})", flush=True)
            handled += 1
            if count and handled >= count:
                break


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
