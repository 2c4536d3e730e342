"""The JET trust policy of the OMEMO envelope (in-process server): encrypt to the trusted
devices, leave the undecided ones out and say so, ask for a decision only when none is left,
and announce a device used by blind trust once."""

from __future__ import annotations

from pathlib import Path

import trio
from jet_trio import JID, open_client
from jet_trio.plugin import (
    KeyEvent,
    KeyNotice,
    KeyTrust,
    PluginManager,
    TransportSecret,
    TrustDecisionNeeded,
)
from jet_trio.testing import make_tls, serve

from jet_trio_omemo import TWOMEMO, open_omemo

ACCOUNTS = {"alice": "alice-pw", "bob": "bob-pw"}
AES256GCM = PluginManager(entry_points=False).cipher("urn:xmpp:ciphers:aes-256-gcm-nopadding")


async def run_pair(
    tmp_path: Path, trust: str, seen: list[KeyNotice]
) -> tuple[list[TransportSecret], BaseException | None, int]:
    """alice (policy ``trust``) encrypts a transport secret to bob twice; bob's device id."""
    tls = make_tls("localhost")
    secrets: list[TransportSecret] = []
    error: BaseException | None = None
    with trio.fail_after(60):
        async with serve("localhost", tls=tls.server_context, accounts=ACCOUNTS) as server:
            clients = {}
            for user, password in ACCOUNTS.items():
                clients[user] = open_client(
                    server.jid(user, "t"),
                    password,
                    host=server.host,
                    port=server.port,
                    ssl_context=tls.client_context,
                    mechanisms=["PLAIN"],
                )
            async with (
                clients["alice"] as alice,
                clients["bob"] as bob,
                open_omemo(bob, tmp_path / "bob", namespaces=(TWOMEMO,)) as bob_omemo,
                open_omemo(
                    alice,
                    tmp_path / "alice",
                    namespaces=(TWOMEMO,),
                    trust=trust,
                    notify=seen.append,
                ) as alice_omemo,
            ):
                (method,) = alice_omemo.envelopes
                for _ in range(2):
                    secret = TransportSecret.generate(AES256GCM)
                    try:
                        await method.encrypt(secret, JID(str(bob.jid.bare)))
                    except TrustDecisionNeeded as exc:
                        error = exc
                        break
                    secrets.append(secret)
                return secrets, error, bob_omemo.device_id


async def test_blind_trust_is_announced_once(tmp_path: Path) -> None:
    seen: list[KeyNotice] = []
    secrets, error, bob_device = await run_pair(tmp_path, "btbv", seen)
    assert error is None and len(secrets) == 2
    (notice,) = seen  # once, not for each transfer
    assert notice.event is KeyEvent.FIRST_USE and notice.method == "omemo"
    assert (str(notice.key.jid), notice.key.device_id) == ("bob@localhost", bob_device)


async def test_no_trusted_device_asks_for_a_decision(tmp_path: Path) -> None:
    """Manual policy: bob's only device is undecided; the envelope names it instead of a bare
    "no trust decision" error, and nothing is announced as trusted."""
    seen: list[KeyNotice] = []
    secrets, error, bob_device = await run_pair(tmp_path, "manual", seen)
    assert secrets == []
    assert isinstance(error, TrustDecisionNeeded)
    assert error.method == "omemo"
    (key,) = error.keys
    assert (str(key.jid), key.device_id, key.trust) == (
        "bob@localhost",
        bob_device,
        KeyTrust.UNDECIDED,
    )
    assert key.fingerprint in str(error)
    assert not [n for n in seen if n.event is KeyEvent.FIRST_USE]
