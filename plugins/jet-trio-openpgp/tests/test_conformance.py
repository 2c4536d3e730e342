"""The OpenPGP envelope passes jet-trio's envelope conformance kit (on the in-process server)."""

from __future__ import annotations

from jet_trio.plugin import EnvelopeMethod, PluginConfig
from jet_trio.testing import check_envelope_method

from jet_trio_openpgp._hooks import jet_register_envelopes


def _factory(config: PluginConfig) -> EnvelopeMethod:
    (method,) = jet_register_envelopes(config=config)
    return method


async def test_openpgp_envelope_conforms() -> None:
    await check_envelope_method(_factory, prevents_replay=True)
