"""``jet-trio plugins``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._run import run


def test_plugins_json(tmp_path: Path) -> None:
    ran = run(["plugins", "--json"], tmp_path)
    assert ran.returncode == 0, ran.stderr
    info = ran.one_json()
    assert info["status"] == "ok"
    assert info["logged_in"] is False
    stub = next(e for e in info["envelopes"] if e["name"] == "stub")
    assert stub["namespace"] == "urn:xmpp:encryption:stub:0"
    assert stub["testing_only"] is True
    assert "urn:xmpp:jingle:jet-stub:0" in stub["features"]
    urns = [c["urn"] for c in info["ciphers"]]
    assert "urn:xmpp:ciphers:aes-128-gcm-nopadding" in urns
    assert "urn:xmpp:ciphers:aes-256-gcm-nopadding" in urns
    assert "urn:xmpp:jingle:jet:0" in info["disco_features"]
    assert isinstance(info["load_errors"], list)
    assert {"builtin-ciphers", "stub-envelope"} <= set(info["plugins"])


def test_plugins_human(tmp_path: Path) -> None:
    ran = run(["plugins"], tmp_path)
    assert ran.returncode == 0, ran.stderr
    for heading in ("Plugins", "Disco features", "Plugins skipped"):
        assert heading in ran.stdout
    assert "INSECURE" in ran.stdout


_BROKEN_PLUGIN = """
from jet_trio.plugin import Cipher, EnvelopeMethod, hookimpl
from jet_trio._plugins.builtin_ciphers import AES256GCM


class NoFeatures(EnvelopeMethod):
    namespace = "urn:example:j16:no-features"

    async def encrypt(self, secret, peer):
        raise NotImplementedError

    async def decrypt(self, element, sender, cipher):
        raise NotImplementedError


class NoTagSize(Cipher):
    urn = "urn:example:j16:no-tag-size"
    key_size = 32
    iv_size = 12
    accepted_iv_sizes = frozenset({12})
    max_plaintext_size = 2**30

    def new_encryptor(self, key, iv):
        return AES256GCM.new_encryptor(key, iv)

    def new_decryptor(self, key, iv):
        return AES256GCM.new_decryptor(key, iv)


@hookimpl
def jet_register_envelopes(config):
    return [NoFeatures()]


@hookimpl
def jet_register_ciphers():
    return [NoTagSize()]
"""


def test_plugins_reports_incomplete_plugin_objects(tmp_path: Path) -> None:
    """An envelope without ``features`` and a cipher without ``tag_size`` are refused at load
    time, naming the plugin and its distribution; ``jet-trio plugins`` still works."""
    site = tmp_path / "site"
    info = site / "j16_broken-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: j16-broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[jet_trio]\nj16-broken = j16_broken\n")
    (site / "j16_broken.py").write_text(_BROKEN_PLUGIN)
    for args in (["plugins", "--json"], ["plugins"]):
        ran = run(args, tmp_path, env={"PYTHONPATH": str(site)})
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "bug in jet-trio" not in ran.stdout + ran.stderr
    info_json = run(["plugins", "--json"], tmp_path, env={"PYTHONPATH": str(site)}).one_json()
    errors = [e for e in info_json["load_errors"] if e["plugin"] == "j16-broken"]
    assert {e["distribution"] for e in errors} == {"j16-broken"}
    reasons = " | ".join(e["reason"] for e in errors)
    assert "envelope NoFeatures" in reasons and "'features'" in reasons, reasons
    assert "cipher NoTagSize" in reasons and "'tag_size'" in reasons, reasons
    assert "urn:example:j16:no-features" not in [e["namespace"] for e in info_json["envelopes"]]
    assert "urn:example:j16:no-tag-size" not in [c["urn"] for c in info_json["ciphers"]]
    assert ran.stdout.count("j16-broken") >= 2  # both listed by the human output


def test_plugins_names_the_class_of_a_third_party_cipher(tmp_path: Path) -> None:
    """The plugin's own class, not the guard jet-trio uses it through."""
    pytest.importorskip("jet_trio_chacha20", reason="plugins/jet-trio-chacha20 not installed")
    info = run(["plugins", "--json"], tmp_path).one_json()
    providers = {c["urn"]: c["provider"] for c in info["ciphers"]}
    chacha = providers["urn:jet-trio:ciphers:chacha20-poly1305:0"]
    assert chacha == "jet_trio_chacha20.ChaCha20Poly1305Cipher"
