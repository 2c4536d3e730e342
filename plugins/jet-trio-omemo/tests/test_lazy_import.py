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
