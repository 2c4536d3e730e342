"""Sphinx configuration for jet-trio (no extension here needs the network)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jet_trio

project = "jet-trio"
author = "jet-trio developers"
copyright = "jet-trio developers"
release = jet_trio.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

exclude_patterns = ["_build"]
html_title = f"jet-trio {release}"
html_static_path: list[str] = []
# Furo (the docs extra installs it): a current theme that reflows on narrow screens; the
# built-in alabaster keeps a build without it possible.
try:
    import furo  # noqa: F401
except ImportError:  # pragma: no cover - only without the docs extra
    html_theme = "alabaster"
else:
    html_theme = "furo"
