"""Loading the plugin through its entry point imports pysequoia only when OpenPGP is wanted.

The plugin manager imports every installed plugin in every process. Each check runs a fresh
interpreter (the test process has everything loaded already).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import jet_trio_openpgp


def run(code: str) -> dict[str, object]:
    script = f"import json, sys\n{code}\n"
    proc = subprocess.run(
        [sys.executable, "-P", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return result


def test_plugin_manager_loads_the_plugin_without_pysequoia() -> None:
    result = run(
        "from jet_trio.plugin import PluginManager\n"
        "pm = PluginManager()\n"
        "print(json.dumps({'plugins': pm.plugin_names, 'errors': [str(e) for e in "
        "pm.load_errors], 'pysequoia': 'pysequoia' in sys.modules}))"
    )
    assert "openpgp" in result["plugins"]  # type: ignore[operator]
    assert result["errors"] == []
    assert result["pysequoia"] is False


def test_public_names_load_on_first_use() -> None:
    result = run(
        "import jet_trio_openpgp\n"
        "before = 'pysequoia' in sys.modules\n"
        "jet_trio_openpgp.open_openpgp\n"
        "print(json.dumps({'before': before, 'after': 'pysequoia' in sys.modules}))"
    )
    assert result == {"before": False, "after": True}


def test_every_public_name_resolves() -> None:
    for name in jet_trio_openpgp.__all__:
        value = getattr(jet_trio_openpgp, name)
        module = importlib.import_module(f"jet_trio_openpgp.{jet_trio_openpgp._LAZY[name]}")
        assert value is getattr(module, name), name
    assert set(jet_trio_openpgp._LAZY) == set(jet_trio_openpgp.__all__)
    assert set(jet_trio_openpgp.__all__) <= set(dir(jet_trio_openpgp))


def test_constants_kept_apart_from_pysequoia_agree() -> None:
    """``_hooks`` and ``_prepared`` repeat a few names so as not to import pysequoia."""
    from jet_trio_openpgp import _hooks, _keys, _prepared, _signcrypt

    assert (_hooks.NS, _hooks.FEATURE) == (_signcrypt.NS, _signcrypt.FEATURE)
    assert (_prepared.META_FILE, _prepared.PUBLIC_FILE) == (_keys.META_FILE, _keys.PUBLIC_FILE)
    assert _prepared.SECRET_FILE == _keys.SECRET_FILE
    assert _prepared._ARMOR_MESSAGE == _keys._ARMOR_MESSAGE


def test_prepared_envelope_imports_no_pysequoia() -> None:
    result = run(
        "import jet_trio_openpgp\n"
        "jet_trio_openpgp.PreparedOpenPGPEnvelope\n"
        "print(json.dumps({'pysequoia': 'pysequoia' in sys.modules}))"
    )
    assert result == {"pysequoia": False}
