"""Plugins found through the ``jet_trio`` entry point group of installed distributions."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from jet_trio._jet.cipher import UnknownCipher
from jet_trio._plugins.builtin_ciphers import AES128GCM
from jet_trio._plugins.guard import GuardedCipher, unguarded
from jet_trio._plugins.manager import PluginManager

CHACHA_URN = "urn:jet-trio:ciphers:chacha20-poly1305:0"


def _installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(
    not _installed("jet-trio-chacha20"),
    reason="jet-trio-chacha20 is not installed (pip install -e plugins/jet-trio-chacha20)",
)
def test_chacha20_plugin_found_through_its_entry_point() -> None:
    pm = PluginManager()
    assert pm.load_errors == []
    assert "chacha20-poly1305" in pm.plugin_names
    cipher = pm.cipher(CHACHA_URN)
    # A guarded view of the plugin's object (a bug in it is pinned on the plugin).
    assert isinstance(cipher, GuardedCipher)
    assert cipher.__class__.__module__ == "jet_trio_chacha20"
    assert type(unguarded(cipher)).__module__ == "jet_trio_chacha20"
    assert pm.cipher(AES128GCM.urn) is AES128GCM
    # Built-ins found through their entry points too are not registered twice.
    assert pm.plugin_names.count("builtin-ciphers") == 1


def _fake_dist(root: Path, dist: str, entry_points: dict[str, str], module: str = "") -> None:
    """An installed distribution on ``root``: a .dist-info and optionally a module."""
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[jet_trio]\n{lines}\n")
    if module:
        name = next(iter(entry_points.values()))
        (root / f"{name}.py").write_text(textwrap.dedent(module))


GOOD = """
    from jet_trio._plugins.builtin_ciphers import AESGCMCipher
    from jet_trio._plugins.hookspecs import hookimpl

    @hookimpl
    def jet_register_ciphers():
        return [AESGCMCipher(24, "urn:example:{tag}")]
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("jtfake_"):
            del sys.modules[name]


def test_entry_points_good_broken_and_conflicting(site: Path) -> None:
    _fake_dist(site, "jtfake-good", {"good": "jtfake_good"}, GOOD.format(tag="good"))
    _fake_dist(site, "jtfake-broken", {"broken": "jtfake_broken"}, "raise ImportError('nope')\n")
    _fake_dist(site, "jtfake-missing", {"missing": "jtfake_not_there"})
    _fake_dist(site, "jtfake-one", {"same-name": "jtfake_one"}, GOOD.format(tag="one"))
    _fake_dist(site, "jtfake-two", {"same-name": "jtfake_two"}, GOOD.format(tag="two"))

    pm = PluginManager()
    errors = {e.name: e for e in pm.load_errors}

    assert pm.cipher("urn:example:good").key_size == 24
    assert pm.cipher(AES128GCM.urn) is AES128GCM

    assert "ImportError: nope" in errors["broken"].reason
    assert errors["broken"].distribution == "jtfake-broken"
    assert "ModuleNotFoundError" in errors["missing"].reason

    # Two distributions with one entry-point name: reported, and neither silently wins.
    conflict = errors["same-name"]
    assert "jtfake-one" in conflict.reason and "jtfake-two" in conflict.reason
    for tag in ("one", "two"):
        with pytest.raises(UnknownCipher):
            pm.cipher(f"urn:example:{tag}")
    assert "same-name" not in pm.plugin_names


def test_entry_points_can_be_disabled(site: Path) -> None:
    _fake_dist(site, "jtfake-off", {"off": "jtfake_off"}, GOOD.format(tag="off"))
    assert "off" in PluginManager().plugin_names
    pm = PluginManager(entry_points=False)
    assert "off" not in pm.plugin_names
    assert pm.plugin_names == ["builtin-ciphers", "stub-envelope"]


def test_plugin_in_code_has_its_entry_point_name(site: Path) -> None:
    """One rule for a plugin's name (its options key): the entry-point name, also in code."""
    _fake_dist(site, "jtfake-named", {"named-ep": "jtfake_named"}, GOOD.format(tag="named"))
    module = importlib.import_module("jtfake_named")
    pm = PluginManager(plugins=[module], entry_points=False)
    assert pm.load_errors == []
    assert pm.plugin_names[-1] == "named-ep"
    # Given a name in code, that name; without an entry point, its __name__.
    pm = PluginManager(plugins={"mine": module}, entry_points=False)
    assert pm.plugin_names[-1] == "mine"
