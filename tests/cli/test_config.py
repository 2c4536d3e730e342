"""The configuration file ($XDG_CONFIG_HOME/jet-trio/config.toml), --plugin-option, --cipher."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ._run import arun, run
from .conftest import LocalServer

AES128 = "urn:xmpp:ciphers:aes-128-gcm-nopadding"
STUB = "urn:xmpp:encryption:stub:0"
NS = "urn:example:j16:gated"

# A plugin whose envelope method exists only when its option says so, and which reports the
# options it was given in its features (so `jet-trio plugins --json` shows what reached it).
_GATED_PLUGIN = """
from jet_trio.plugin import EnvelopeMethod, hookimpl


class Gated(EnvelopeMethod):
    namespace = "urn:example:j16:gated"

    def __init__(self, options):
        self.features = tuple(f"urn:example:j16:option:{k}={v}" for k, v in sorted(options.items()))

    async def encrypt(self, secret, peer):
        raise NotImplementedError

    async def decrypt(self, element, sender, cipher):
        raise NotImplementedError


@hookimpl
def jet_register_envelopes(config):
    options = config.options.get("gated", {})
    return [Gated(options)] if options.get("enabled") == "yes" else []
"""


def _site(tmp_path: Path) -> dict[str, str]:
    """An installed distribution j16-gated with the entry point ``gated``."""
    site = tmp_path / "site"
    info = site / "j16_gated-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: j16-gated\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[jet_trio]\ngated = j16_gated\n")
    (site / "j16_gated.py").write_text(_GATED_PLUGIN)
    return {"PYTHONPATH": str(site)}


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "xdg-config" / "jet-trio" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _gated_features(tmp_path: Path, *args: str) -> list[str] | None:
    ran = run(["plugins", "--json", *args], tmp_path, env=_site(tmp_path))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    info = ran.one_json()
    gated = [e for e in info["envelopes"] if e["namespace"] == NS]
    return gated[0]["features"] if gated else None


def test_plugin_options_from_the_file_and_the_command_line(tmp_path: Path) -> None:
    # Installed, not configured: no method.
    assert _gated_features(tmp_path) is None
    # From the configuration file, under the plugin's entry-point name.
    _config(
        tmp_path,
        """
        [plugins.gated]
        enabled = "yes"
        level = 3
        strict = true
        """,
    )
    assert _gated_features(tmp_path) == [
        "urn:example:j16:option:enabled=yes",
        "urn:example:j16:option:level=3",
        "urn:example:j16:option:strict=true",
    ]
    # --plugin-option overrides the file and adds to it.
    assert _gated_features(
        tmp_path, "--plugin-option", "gated.level=4", "--plugin-option", "gated.extra=a=b"
    ) == [
        "urn:example:j16:option:enabled=yes",
        "urn:example:j16:option:extra=a=b",
        "urn:example:j16:option:level=4",
        "urn:example:j16:option:strict=true",
    ]
    assert _gated_features(tmp_path, "--plugin-option", "gated.enabled=no") is None


def test_plugin_option_alone(tmp_path: Path) -> None:
    assert _gated_features(tmp_path, "--plugin-option", "gated.enabled=yes") == [
        "urn:example:j16:option:enabled=yes"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[default]\nenvelope = 'stub'\n", "unknown table [default] (known: [defaults]"),
        ("[defaults]\nenvelop = 'stub'\n", "unknown key defaults.envelop (known: account,"),
        ("[defaults]\ncipher_preference = 'urn:x'\n", "defaults.cipher_preference must be a list"),
        ("[defaults]\nwebrtc = 'yes'\n", "defaults.webrtc must be a bool, not 'yes'"),
        (
            "[accounts.'a@example.org']\nlogin_timeout = 'soon'\n",
            "accounts.\"a@example.org\".login_timeout must be a int or float, not 'soon'",
        ),
        ("[plugins.gated]\nkeys = [1, 2]\n", "plugins.gated.keys must be a string, a number"),
        ("[defaults\n", "is not valid TOML"),
    ],
)
def test_malformed_config_is_a_usage_error_naming_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _config(tmp_path, text)
    ran = run(["plugins", "--json"], tmp_path)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    error = ran.one_json()
    assert error["reason"] == "usage"
    assert error["message"].startswith(f"{path}: ")
    assert message in error["message"]


def test_bad_plugin_option(tmp_path: Path) -> None:
    ran = run(["plugins", "--plugin-option", "gated-enabled=yes"], tmp_path)
    assert ran.returncode == 2
    assert "--plugin-option 'gated-enabled=yes': expected NAME.KEY=VALUE" in ran.stderr


def test_demo_cipher_option(tmp_path: Path) -> None:
    ran = run(
        ["demo", "--envelope", "stub", "--size", "1000", "--cipher", AES128, "--json"], tmp_path
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.one_json()["cipher"] == AES128
    ran = run(["demo", "--envelope", "stub", "--cipher", "urn:example:nope", "--json"], tmp_path)
    assert ran.returncode == 2, ran.stderr
    assert "--cipher: unsupported JET cipher 'urn:example:nope'" in ran.one_json()["message"]


def test_defaults_from_the_file(tmp_path: Path) -> None:
    _config(
        tmp_path,
        f"""
        [defaults]
        envelope = "stub"
        cipher = "{AES128}"
        """,
    )
    ran = run(["demo", "--size", "1000", "--json"], tmp_path)
    assert ran.returncode == 0, ran.stderr
    result = ran.one_json()
    assert (result["envelope"], result["cipher"]) == (STUB, AES128)
    # The command line wins.
    aes256 = "urn:xmpp:ciphers:aes-256-gcm-nopadding"
    ran = run(["demo", "--size", "1000", "--cipher", aes256, "--json"], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.one_json()["cipher"] == aes256


def test_cipher_preference_from_the_file(tmp_path: Path) -> None:
    pytest.importorskip("jet_trio_chacha20", reason="plugins/jet-trio-chacha20 not installed")
    chacha = "urn:jet-trio:ciphers:chacha20-poly1305:0"
    _config(
        tmp_path,
        f"""
        [defaults]
        cipher_preference = ["urn:example:not-installed", "{chacha}"]
        """,
    )
    ran = run(["demo", "--envelope", "stub", "--size", "1000", "--json"], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.one_json()["cipher"] == chacha


async def test_account_settings_from_the_file(tmp_path: Path, local_server: LocalServer) -> None:
    """[accounts."JID"]: the server and CA of the account given with --account."""
    env = local_server.env("alice")
    _config(
        tmp_path,
        f"""
        [defaults]
        account = "alice@localhost"

        [accounts."alice@localhost"]
        server = "{env["JET_TRIO_SERVER"]}"
        ca_file = "{env["JET_TRIO_CA_FILE"]}"
        login_timeout = 20
        """,
    )
    ran = await arun(
        ["plugins", "--json"], tmp_path, env={"JET_TRIO_PASSWORD": env["JET_TRIO_PASSWORD"]}
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.one_json()["logged_in"] is True
    # Without the file's server the account's domain is looked up: it does not exist.
    (tmp_path / "xdg-config" / "jet-trio" / "config.toml").unlink()
    ran = await arun(
        ["plugins", "--json", "--account", "alice@localhost"],
        tmp_path,
        env={"JET_TRIO_PASSWORD": env["JET_TRIO_PASSWORD"]},
    )
    assert ran.returncode != 0


def test_data_channel_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``webrtc`` and ``relay_only``: off unless set; an account's settings win."""
    from jet_trio._cli import config

    monkeypatch.setattr(config, "_active", config.UserConfig())
    assert config.data_channel("a@example.org") == {"webrtc": False, "relay_only": False}
    path = _config(
        tmp_path,
        """
        [defaults]
        webrtc = true

        [accounts."b@example.org"]
        relay_only = true
        webrtc = false
        """,
    )
    monkeypatch.setattr(config, "_active", config.load_config(path))
    assert config.data_channel("a@example.org/r") == {"webrtc": True, "relay_only": False}
    assert config.data_channel("b@example.org") == {"webrtc": False, "relay_only": True}
