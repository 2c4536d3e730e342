"""``jet-trio plugins``."""

from __future__ import annotations

from pathlib import Path

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
    for heading in ("Envelope methods", "Ciphers", "Disco features", "Plugins skipped"):
        assert heading in ran.stdout
    assert "INSECURE" in ran.stdout
