"""What a ``send`` loads at start-up: the heavy parts it does not need are imported only when
used (bench/bench_startup.py measures the cost)."""

from __future__ import annotations

import subprocess
import sys

import pytest

LAZY = ("rich.progress", "cryptography.x509", "psutil", "jet_trio_omemo", "xmlschema")


@pytest.mark.parametrize("module", ["jet_trio._cli.main", "jet_trio._cli.transfer"])
def test_the_send_path_imports_no_heavy_part_it_may_not_need(module: str) -> None:
    code = f"import sys, {module}; print(' '.join(m for m in {LAZY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []
