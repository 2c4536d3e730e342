"""The plugin tutorial (docs/tutorial-plugins.rst) works as written: its two distributions,
taken from the files the tutorial includes, are pip-installed and used by `jet-trio demo` and
by `jet-trio send` / `receive` through a server."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from jet_trio.testing import check_cipher

from ._run import Ran, arun, run
from .conftest import LocalServer

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial"
DISTRIBUTIONS = ("jet-trio-aes192", "jet-trio-psk")
CIPHER = "urn:example:jet-trio-tutorial:aes-192-gcm:0"
ENVELOPE = "urn:example:jet-trio-tutorial:psk:0"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both distributions pip-installed (as a user would: from their directories) into a
    directory of their own, which the processes of the tests put on their path."""
    target = tmp_path_factory.mktemp("tutorial-site")
    # Copies: a build leaves egg-info and build directories beside the sources.
    sources = tmp_path_factory.mktemp("tutorial-src")
    for dist in DISTRIBUTIONS:
        shutil.copytree(TUTORIAL / dist, sources / dist)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            *(str(sources / d) for d in DISTRIBUTIONS),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return target


@pytest.fixture
def on_path(installed: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(installed))
    yield installed
    for name in ("jet_trio_aes192", "jet_trio_psk"):
        sys.modules.pop(name, None)


def _env(installed: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"PYTHONPATH": str(installed), **(extra or {})}


def _key(tmp_path: Path) -> Path:
    key = tmp_path / "alice-bob.key"
    key.write_text(os.urandom(32).hex() + "\n")
    key.chmod(0o600)
    return key


def test_the_cipher_passes_the_conformance_kit(on_path: Path) -> None:
    module = importlib.import_module("jet_trio_aes192")
    check_cipher(module.AES192GCM())


def test_installed_plugins_are_listed(tmp_path: Path, installed: Path) -> None:
    ran = run(["plugins", "--json"], tmp_path, env=_env(installed))
    assert ran.returncode == 0, ran.stderr
    info = ran.one_json()
    assert {"aes192", "psk-envelope"} <= set(info["plugins"])
    assert CIPHER in [c["urn"] for c in info["ciphers"]]
    assert info["load_errors"] == []


def test_demo_with_the_tutorial_plugins(tmp_path: Path, installed: Path) -> None:
    key = _key(tmp_path)
    args = ["demo", "--envelope", ENVELOPE, "--cipher", CIPHER, "--size", "300000", "--json"]
    ran = run([*args, "--plugin-option", f"psk-envelope.key_file={key}"], tmp_path, _env(installed))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    result = ran.one_json()
    assert (result["envelope"], result["cipher"]) == (ENVELOPE, CIPHER)
    assert result["hash_verified"] is True and result["wire_bytes"] == 300_000 + 16

    # A wrong key file stops the demo with the plugin's own message.
    key.write_text("not hex\n")
    ran = run([*args, "--plugin-option", f"psk-envelope.key_file={key}"], tmp_path, _env(installed))
    assert ran.returncode == 8, ran.stdout + ran.stderr
    assert "psk-envelope: cannot read the key file" in ran.one_json()["message"]


async def test_send_and_receive_with_the_tutorial_plugins(
    tmp_path: Path, installed: Path, local_server: LocalServer
) -> None:
    key = _key(tmp_path)
    # The key file in the configuration file, as the tutorial shows (both accounts run here,
    # with one configuration directory).
    config = tmp_path / "xdg-config" / "jet-trio" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[plugins.psk-envelope]\nkey_file = "{key}"\n')
    src = tmp_path / "report.pdf"
    src.write_bytes(os.urandom(200_000))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    results: dict[str, Ran] = {}

    async def receive() -> None:
        results["receive"] = await arun(
            ["receive", "--output-dir", str(inbox), "--timeout", "30", "--json"],
            tmp_path,
            _env(installed, local_server.env("bob")),
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        results["send"] = await arun(
            [
                "send",
                str(src),
                "--to",
                "bob@localhost",
                "--envelope",
                ENVELOPE,
                "--cipher",
                CIPHER,
                "--wait",
                "20",
                "--json",
            ],
            tmp_path,
            _env(installed, local_server.env("alice")),
        )
    sent, received = results["send"], results["receive"]
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert received.returncode == 0, received.stdout + received.stderr
    for result in (sent.one_json(), received.one_json()):
        assert (result["envelope"], result["cipher"]) == (ENVELOPE, CIPHER)
    assert (inbox / src.name).read_bytes() == src.read_bytes()
