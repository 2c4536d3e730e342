"""A third-party envelope plugin gets what OMEMO gets, through the same hooks and interfaces.

The plugin below (a pre-shared key file, as a plugin author would write it against
``jet_trio.plugin`` only) is installed as its own distribution (an entry point in a directory
on ``PYTHONPATH``) and driven through the real command line: its short name works with
``--envelope``, its session runs for the connection, ``fingerprints`` and ``trust`` list and
change its keys, ``jet-trio plugins`` shows its method, options, install hint and why it is not
loaded without a login, and its trust notices reach the user with the command to run.
"""

from __future__ import annotations

from pathlib import Path

import trio

from ._run import Ran, arun, run
from .conftest import LocalServer
from .test_send_receive import payload

NS = "urn:example:keyfile:0"

_PLUGIN = """
import base64, hashlib, json, os
from contextlib import asynccontextmanager

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from lxml import etree

from jet_trio import JID, Client
from jet_trio.plugin import (
    DecryptedEnvelope, EnvelopeError, EnvelopeInfo, EnvelopeMethod, EnvelopeSession, KeyEvent,
    KeyNotice, KeyRecord, KeyStore, KeyTrust, TransportSecret, Trust, TrustDecisionNeeded,
    hookimpl,
)

NS = "urn:example:keyfile:0"
RUNNING = {}  # client -> the running session (what jet_register_envelopes offers)


class Keys(KeyStore):
    name = "keyfile"
    title = "Key files"

    def __init__(self, session):
        self.session = session

    def fingerprint(self):
        digest = hashlib.sha256(self.session.key).hexdigest()[:32]
        return " ".join(digest[i : i + 8] for i in range(0, 32, 8))

    async def list_keys(self, jid):
        if jid.bare == self.session.client.jid.bare:
            return [KeyRecord(jid.bare, self.fingerprint(), KeyTrust.OWN)]
        return [KeyRecord(jid.bare, self.fingerprint(), self.session.trust(jid))]

    async def set_trust(self, key, trusted):
        self.session.decide(key.jid, "verified" if trusted else "distrusted")
        return (await self.list_keys(key.jid))[0]


class Session(EnvelopeSession):
    label = "keyfile"
    methods = frozenset({"keyfile", NS})

    def __init__(self, config):
        self.config = config
        self.client = config.client
        self.dir = config.data_dir / "keyfile"
        self.key_store = Keys(self)

    @asynccontextmanager
    async def open(self):
        self.key = (self.dir / "shared.key").read_bytes()  # no key file: fails to open
        self.decisions_file = self.dir / "trust.json"
        RUNNING[self.client] = self
        try:
            yield self
        finally:
            del RUNNING[self.client]

    def decisions(self):
        if self.decisions_file.exists():
            return json.loads(self.decisions_file.read_text())
        return {}

    def decide(self, jid, state):
        d = self.decisions()
        d[str(jid.bare)] = state
        self.decisions_file.write_text(json.dumps(d))

    def trust(self, jid):
        state = self.decisions().get(str(jid.bare))
        return {"verified": KeyTrust.VERIFIED, "distrusted": KeyTrust.DISTRUSTED}.get(
            state, KeyTrust.TOFU if state == "tofu" else KeyTrust.UNDECIDED
        )

    def check(self, jid):
        record = KeyRecord(jid.bare, self.key_store.fingerprint(), self.trust(jid))
        if record.trust is KeyTrust.DISTRUSTED:
            raise TrustDecisionNeeded(f"the key file of {jid.bare} is distrusted", "keyfile",
                                      [record])
        if record.trust is KeyTrust.UNDECIDED:
            self.decide(jid, "tofu")
            record = KeyRecord(jid.bare, record.fingerprint, KeyTrust.TOFU)
            self.config.tell(KeyNotice(KeyEvent.FIRST_USE, "keyfile", record))


class Keyfile(EnvelopeMethod):
    namespace = NS
    features = ("urn:example:keyfile:feature:0",)
    short_name = "keyfile"
    install_hint = "pip install jet-trio-keyfile"

    def __init__(self, session):
        self.session = session
        self.key_store = session.key_store

    async def encrypt(self, secret, peer):
        self.session.check(peer)
        nonce = os.urandom(12)
        aad = str(self.session.client.jid.bare).encode()
        sealed = AESGCM(self.session.key).encrypt(nonce, secret.to_bytes(), aad)
        el = etree.Element(f"{{{NS}}}sealed", nsmap={None: NS})
        el.text = base64.b64encode(nonce + sealed).decode()
        return el

    async def decrypt(self, element, sender, cipher):
        self.session.check(sender)
        raw = base64.b64decode(element.text or "")
        try:
            plain = AESGCM(self.session.key).decrypt(raw[:12], raw[12:], str(sender.bare).encode())
        except Exception:
            raise EnvelopeError("keyfile: not sealed with our shared key") from None
        return DecryptedEnvelope(TransportSecret.from_bytes(plain, cipher), sender.bare,
                                 Trust.UNDECIDED, "keyfile")


@hookimpl
def jet_describe_envelopes():
    return [EnvelopeInfo(NS, "keyfile", "pip install jet-trio-keyfile",
                         requires="a login (pass --account) and a key file",
                         options={"path": "where the shared key file is"})]


@hookimpl
def jet_envelope_sessions(config):
    if not isinstance(config.client, Client) or config.data_dir is None:
        return []
    return [Session(config)] if config.wants(NS, "keyfile") else []


@hookimpl
def jet_register_envelopes(config):
    session = RUNNING.get(config.client)
    return [] if session is None else [Keyfile(session)]
"""


def install_keyfile(tmp_path: Path) -> dict[str, str]:
    """Install the plugin as distribution ``jet-trio-keyfile``; the environment that sees it."""
    site = tmp_path / "site"
    info = site / "jet_trio_keyfile-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: jet-trio-keyfile\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[jet_trio]\nkeyfile = jet_trio_keyfile\n")
    (site / "jet_trio_keyfile.py").write_text(_PLUGIN)
    return {"PYTHONPATH": str(site)}


def give_key(tmp_path: Path, *accounts: str) -> None:
    key = bytes(range(32))
    for account in accounts:
        d = tmp_path / "xdg" / "jet-trio" / account / "keyfile"
        d.mkdir(parents=True, exist_ok=True)
        (d / "shared.key").write_bytes(key)


def test_plugins_lists_the_method_its_options_and_why_not_loaded(tmp_path: Path) -> None:
    env = install_keyfile(tmp_path)
    ran = run(["plugins", "--json"], tmp_path, env)
    assert ran.returncode == 0, ran.stderr
    (entry,) = [p for p in ran.one_json()["by_plugin"] if p["name"] == "keyfile"]
    assert entry["distribution"] == "jet-trio-keyfile"
    assert entry["options"] == {"keyfile.path": "where the shared key file is"}
    (missing,) = entry["not_loaded"]
    assert missing["name"] == "keyfile" and missing["namespace"] == NS
    assert missing["why"] == "needs a login (pass --account) and a key file"
    assert missing["install_hint"] == "pip install jet-trio-keyfile"
    human = run(["plugins"], tmp_path, env).stdout
    assert "keyfile (jet-trio-keyfile)" in human
    assert "option   keyfile.path: where the shared key file is" in human
    assert f"not loaded: envelope keyfile {NS}: needs a login" in human
    assert human.count(NS) == 1  # each namespace once


async def send_and_receive(
    tmp_path: Path, local_server: LocalServer, env: dict[str, str], send: list[str]
) -> tuple[Ran, Ran]:
    src = payload(tmp_path, 5000)
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    results: dict[str, Ran] = {}

    async def receive() -> None:
        results["receive"] = await arun(
            ["receive", "-o", str(inbox), "--timeout", "25", "--json", "--overwrite"],
            tmp_path,
            local_server.env("bob") | env,
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        results["send"] = await arun(
            ["send", str(src), "--to", "bob@localhost", "--wait", "20", "--json", *send],
            tmp_path,
            local_server.env("alice") | env,
        )
    return results["send"], results["receive"]


async def test_third_party_envelope_as_capable_as_omemo(
    tmp_path: Path, local_server: LocalServer
) -> None:
    env = install_keyfile(tmp_path)
    give_key(tmp_path, "alice@localhost", "bob@localhost")

    # Its short name, its session in the connection, and first use announced on both ends.
    sent, received = await send_and_receive(tmp_path, local_server, env, ["--envelope", "keyfile"])
    assert sent.returncode == 0 and received.returncode == 0, (sent.stderr, received.stderr)
    assert sent.one_json()["envelope"] == NS == received.one_json()["envelope"]
    assert "new keyfile key for bob@localhost: " in sent.stderr
    assert "(trusted on first use)" in sent.stderr
    assert "jet-trio trust bob@localhost " in sent.stderr
    assert "new keyfile key for alice@localhost: " in received.stderr

    # Key listing and trust, as for OMEMO.
    listed = await arun(
        ["fingerprints", "bob@localhost", "--envelope", "keyfile", "--json"],
        tmp_path,
        local_server.env("alice") | env,
    )
    assert listed.returncode == 0, listed.stderr
    own, bob = listed.one_json()["keys"]
    assert (own["envelope"], own["trust"], bob["trust"]) == ("keyfile", "own", "tofu")
    ran = await arun(
        ["trust", "bob@localhost", bob["fingerprint"], "--distrust", "--json"],
        tmp_path,
        local_server.env("alice") | env,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.one_json()["trust"] == "distrusted"

    # The decision applies to sending (bob is online), and the refusal says how to undo it.
    refused, _ = await send_and_receive(tmp_path, local_server, env, ["--envelope", "keyfile"])
    failure = refused.json_lines()[-1]
    assert (refused.returncode, failure["reason"]) == (8, "encryption"), refused.stderr
    compact = bob["fingerprint"].replace(" ", "")
    assert f"`jet-trio trust bob@localhost {compact}`" in failure["hint"]


async def test_third_party_session_failure_is_not_dropped_silently(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """No key file: the plugin's session fails to open; a send asking for it is refused with
    the cause, as for a broken OMEMO store."""
    env = install_keyfile(tmp_path)
    src = payload(tmp_path, 100)
    args = ["send", str(src), "--to", "bob@localhost", "--wait", "1", "--json"]
    ran = await arun([*args, "--envelope", "keyfile"], tmp_path, local_server.env("alice") | env)
    failure = ran.one_json()
    assert (ran.returncode, failure["reason"]) == (8, "encryption"), ran.stderr
    assert "keyfile could not be set up" in failure["message"]
    assert "shared.key" in failure["message"]
    assert "keyfile is NOT available in this run" in ran.stderr


async def test_install_hint_when_the_recipient_lacks_the_method(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """bob has no keyfile plugin: alice is told before offering, with the plugin's install
    hint; bob refuses the offer saying the method is not installed there."""
    env = install_keyfile(tmp_path)
    give_key(tmp_path, "alice@localhost")
    src = payload(tmp_path, 100)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    results: dict[str, Ran] = {}

    async def receive() -> None:
        results["receive"] = await arun(
            ["receive", "-o", str(inbox), "--timeout", "20", "--json"],
            tmp_path,
            local_server.env("bob"),  # without the plugin
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        args = ["send", str(src), "--to", "bob@localhost", "--wait", "15", "--json"]
        sent = await arun(
            [*args, "--envelope", "keyfile"], tmp_path, local_server.env("alice") | env
        )
    text = " ".join(sent.stderr.split())
    assert "does not advertise the keyfile envelope method" in text, sent.stderr
    assert "they can install it: pip install jet-trio-keyfile" in text
    assert sent.returncode != 0
    assert f"encrypted with {NS}, which is not installed here" in results["receive"].stderr
