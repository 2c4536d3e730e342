"""Both JET-OMEMO envelopes pass jet-trio's envelope conformance kit (in-process server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from jet_trio import Client
from jet_trio.plugin import EnvelopeMethod, PluginConfig
from jet_trio.testing import check_envelope_method

from jet_trio_omemo import OLDMEMO, TWOMEMO, open_omemo


@pytest.mark.parametrize("namespace", [OLDMEMO, TWOMEMO])
async def test_omemo_envelope_conforms(namespace: str) -> None:
    @asynccontextmanager
    async def factory(config: PluginConfig) -> AsyncIterator[EnvelopeMethod]:
        assert isinstance(config.client, Client) and config.data_dir is not None
        async with open_omemo(config.client, config.data_dir, namespaces=(namespace,)) as omemo:
            (method,) = omemo.envelopes
            yield method

    # Legacy OMEMO sends the IV in clear beside the encrypted key (what Dino and Conversations
    # need): a changed IV is only caught by the file's tag.
    await check_envelope_method(
        factory, prevents_replay=True, iv_authenticated=namespace != OLDMEMO
    )
