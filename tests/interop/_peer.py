"""jet-trio's side of the interop tests: the ``bob`` account, a roster contact of Dino's
``alice``."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from lxml import etree

from jet_trio import Client, FileTransfer, open_client, open_file_transfer

from ._lab import Lab

CLIENT_NS = "jabber:client"
SIZE = 200_000


@asynccontextmanager
async def jet_peer(
    lab: Lab,
    resource: str,
    *,
    omemo_dir: Path | None = None,
    prepared: bool = False,
    **ft_options: Any,
) -> AsyncIterator[tuple[Client, FileTransfer, Any]]:
    """jet-trio logged in as ``bob`` with file transfer on (caps: file-transfer:5, S5B, IBB),
    once Dino's resource is available. With ``omemo_dir``, OMEMO (jet-trio-omemo) runs first,
    so the JET-OMEMO envelopes are offered; the third item is then the OMEMO session
    (``prepared``: a prepared OMEMO, as ``jet-trio receive`` runs it, which starts the session
    on the first OMEMO offer).
    ``ft_options`` go to ``open_file_transfer`` (``direct_addresses=None``: no direct candidate,
    as behind a NAT, so the transfer goes through Prosody's proxy)."""
    info = lab.prosody.info
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            open_client(
                f"{info.jid(lab.jet_user)}/{resource}",
                info.password(lab.jet_user),
                host=info.host,
                port=info.port,
                ca_file=info.ca_file,
            )
        )
        omemo = None
        if omemo_dir is not None:
            from jet_trio_omemo import open_omemo, prepare_omemo

            run = prepare_omemo if prepared else open_omemo
            with trio.fail_after(30):
                omemo = await stack.enter_async_context(run(client, omemo_dir))
        ft = await stack.enter_async_context(
            open_file_transfer(
                client, **{"direct_addresses": ["127.0.0.1"], "use_proxies": True, **ft_options}
            )
        )
        with trio.fail_after(20):
            await client.wait_available(lab.dino_jid)
        yield client, ft, omemo


async def say_hello(client: Client, to_bare: str) -> None:
    """A chat message: Dino then has a conversation with us (needed for its auto-accept and
    for its attach button)."""
    msg = etree.Element(
        f"{{{CLIENT_NS}}}message",
        {"to": to_bare, "type": "chat", "id": os.urandom(6).hex()},
        nsmap={None: CLIENT_NS},  # type: ignore[dict-item]
    )
    etree.SubElement(msg, f"{{{CLIENT_NS}}}body").text = "hello from jet-trio (interop test)"
    await client.send(msg)


def make_file(directory: Path, name: str, size: int = SIZE) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(os.urandom(size))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
