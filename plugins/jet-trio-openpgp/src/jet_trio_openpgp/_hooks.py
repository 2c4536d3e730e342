"""The entry point of the ``jet_trio`` group.

OpenPGP needs an asynchronous set-up (load or make the key, publish it through PEP) that the
synchronous hooks of jet-trio cannot run. The recommended use is therefore explicit::

    async with open_openpgp(client, data_dir) as pgp, \\
            open_file_transfer(client, extra_plugins=[pgp]) as ft:
        ...

Through the entry point alone, the method is offered only when the plugin configuration has a
``data_dir`` and a connected ``client``. Its start only checks, with PEP reads and without
pysequoia, that our key and key list are published (a receiver may never get an OpenPGP offer);
the full service starts on first use, or at once when our key is not made yet or not published
(it then publishes it): see :mod:`._prepared`. Options (key ``"openpgp"`` of
``PluginConfig.options``): ``passphrase``, ``policy`` (``tofu``/``manual``), ``max_clock_skew``
(seconds).
"""

from __future__ import annotations

from datetime import timedelta

from jet_trio import Client
from jet_trio.plugin import EnvelopeInfo, EnvelopeMethod, PluginConfig, hookimpl

__all__ = ["jet_describe_envelopes", "jet_register_envelopes"]

NS = "urn:xmpp:openpgp:0"  # _signcrypt.NS, without importing pysequoia for a method not wanted
FEATURE = "urn:jet-trio:jingle:jet-openpgp:0"  # _signcrypt.FEATURE, likewise
SHORT_NAME = "openpgp"
INSTALL_HINT = "pip install jet-trio-openpgp"
OPTIONS = {
    "passphrase": "the passphrase of our secret key (default: none)",
    "policy": "tofu (default: trust on first use) or manual",
    "max_clock_skew": "seconds an envelope's time may differ from ours (default 300)",
}


@hookimpl
def jet_describe_envelopes() -> list[EnvelopeInfo]:
    """The OpenPGP envelope: ``--envelope openpgp``."""
    return [
        EnvelopeInfo(
            NS,
            SHORT_NAME,
            INSTALL_HINT,
            requires="a login (pass --account): our key is published through PEP",
            options=OPTIONS,
        )
    ]


@hookimpl
def jet_register_envelopes(config: PluginConfig) -> list[EnvelopeMethod]:
    """The lazily started OpenPGP envelope, when ``config`` has a data directory and a client
    (and wants it: see ``PluginConfig.envelopes``)."""
    if config.data_dir is None or not isinstance(config.client, Client):
        return []
    if not config.wants(NS, SHORT_NAME):
        return []
    from ._prepared import PreparedOpenPGPEnvelope

    opts = config.options.get("openpgp", {})
    skew = opts.get("max_clock_skew")
    policy = str(opts.get("policy", "tofu"))
    if policy not in ("tofu", "manual"):  # as TrustPolicy(policy) says it, without pysequoia
        raise ValueError(f"{policy!r} is not a valid TrustPolicy")
    return [
        PreparedOpenPGPEnvelope(
            config.client,
            config.data_dir / "openpgp",
            passphrase=opts.get("passphrase"),
            policy=policy,
            max_clock_skew=timedelta(seconds=float(skew)) if skew else None,
            notify=config.notify,
        )
    ]
