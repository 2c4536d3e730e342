"""Loading the plugin through its entry point costs nothing until OMEMO is used.

The plugin manager imports every installed plugin in every process; the OMEMO libraries take
~0.4 s and ~25 MiB to import, so they must wait for an OMEMO session. Each check runs a fresh
interpreter (the test process has them loaded already).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import jet_trio_omemo

HEAVY = ["oldmemo", "twomemo", "omemo", "xmlschema", "doubleratchet", "x3dh"]


def run(code: str) -> dict[str, object]:
    script = f"import json, sys\n{code}\n"
    proc = subprocess.run(
        [sys.executable, "-P", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return result


def test_plugin_manager_loads_the_plugin_without_the_omemo_libraries() -> None:
    result = run(
        "from jet_trio.plugin import PluginManager\n"
        "pm = PluginManager()\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & set(" + repr(HEAVY) + "))\n"
        "print(json.dumps({'plugins': pm.plugin_names, 'errors': [str(e) for e in "
        "pm.load_errors], 'envelopes': [e.namespace for e in pm.envelopes], 'heavy': heavy}))"
    )
    assert "omemo" in result["plugins"]  # type: ignore[operator]
    assert result["errors"] == []
    assert not [e for e in result["envelopes"] if "axolotl" in e or "omemo" in e]  # type: ignore[attr-defined]
    assert result["heavy"] == []


def test_public_names_load_on_first_use() -> None:
    result = run(
        "import jet_trio_omemo\n"
        "before = 'oldmemo' in sys.modules\n"
        "jet_trio_omemo.open_omemo\n"
        "print(json.dumps({'before': before, 'after': 'oldmemo' in sys.modules}))"
    )
    assert result == {"before": False, "after": True}


def test_every_public_name_resolves() -> None:
    for name in jet_trio_omemo.__all__:
        value = getattr(jet_trio_omemo, name)
        if not name.startswith("jet_"):  # the hooks, defined in the package itself
            module = importlib.import_module(f"jet_trio_omemo.{jet_trio_omemo._LAZY[name]}")
            assert value is getattr(module, name), name
    assert set(jet_trio_omemo.__all__) <= set(dir(jet_trio_omemo))


def test_omemo_modules_import_no_schema_codec() -> None:
    """What an OMEMO session loads (``-X importtime``): the plugin's own codecs, not the
    backends' ElementTree ones, which build xmlschema schemas at import (~0.5 s, ~14 MiB).
    tests/integration/test_omemo_prosody.py checks the same after real transfers."""
    proc = subprocess.run(
        [
            sys.executable,
            "-P",
            "-X",
            "importtime",
            "-c",
            "import jet_trio_omemo._session, jet_trio_omemo._envelope",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert {"jet_trio_omemo._codecs", "oldmemo.oldmemo", "twomemo.twomemo"} <= imported
    slow = {"xmlschema", "elementpath", "oldmemo.etree", "twomemo.etree"}
    assert not {m for m in imported if m in slow or m.split(".")[0] in slow}


def test_prepared_omemo_needs_no_omemo_library() -> None:
    """What a receiver runs before an OMEMO offer: the prepared OMEMO, its envelope methods and
    the device list reader, without python-omemo, its backends, x3dh, pydantic or protobuf."""
    result = run(
        "from jet_trio_omemo import prepare_omemo, PreparedOmemo\n"
        "from jet_trio_omemo._xmlbase import device_ids\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & set("
        + repr([*HEAVY, "pydantic", "google"])
        + "))\n"
        "print(json.dumps({'heavy': heavy}))"
    )
    assert result == {"heavy": []}


def test_light_constants_match_the_libraries() -> None:
    """The namespaces written out in the light modules are the libraries' own."""
    import oldmemo.oldmemo
    import twomemo.twomemo

    from jet_trio_omemo import _prepared, _session, _xmlbase

    assert _xmlbase.OLDMEMO == oldmemo.oldmemo.NAMESPACE
    assert _xmlbase.TWOMEMO == twomemo.twomemo.NAMESPACE
    assert jet_trio_omemo._NAMESPACES == (_xmlbase.OLDMEMO, _xmlbase.TWOMEMO)
    assert _prepared.OmemoError is _session.OmemoError
    from jet_trio_omemo._envelope import JET_OMEMO_FEATURE

    assert _prepared.JET_OMEMO_FEATURE == JET_OMEMO_FEATURE


def test_published_identity_key_forms() -> None:
    """The prepared check compares our bundle's identity key in the form each version
    publishes: Ed25519 (OMEMO 2), 0x05 + its Curve25519 form (legacy), as xeddsa converts."""
    import secrets

    import xeddsa

    from jet_trio_omemo import _prepared, _xmlbase

    for _ in range(20):
        priv = xeddsa.seed_to_priv(secrets.token_bytes(32))
        ed = xeddsa.priv_to_ed25519_pub(priv)
        curve = xeddsa.ed25519_pub_to_curve25519_pub(ed)
        assert _prepared._published_form(_xmlbase.TWOMEMO, ed) == ed
        assert _prepared._published_form(_xmlbase.OLDMEMO, ed) == b"\x05" + curve
