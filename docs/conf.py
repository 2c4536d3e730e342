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

# -- Reference documentation: every cross-reference checked, Python and trio linked ----------
# (sphinx-build -W then fails on a link to nothing.) The inventories are read from local files
# first, so that the build needs no network: Python's from the python3-doc package, trio's from
# docs/_inventories (see make_trio_inventory.py there); the online ones otherwise.
extensions.append("sphinx.ext.intersphinx")
nitpicky = True
_INVENTORIES = Path(__file__).resolve().parent / "_inventories"
_PYTHON_INV = "/usr/share/doc/python3/html/objects.inv"
intersphinx_mapping = {
    "python": (
        "https://docs.python.org/3",
        (_PYTHON_INV if Path(_PYTHON_INV).is_file() else None, None),
    ),
    "trio": ("https://trio.readthedocs.io/en/stable", (str(_INVENTORIES / "trio.inv"), None)),
}
intersphinx_timeout = 10
# Types that have no Sphinx documentation to link to (lxml's element class, private aliases).
nitpick_ignore = [
    ("py:class", "lxml.etree._Element"),
    ("py:class", "etree._Element"),
]
# Private sentinel types of defaults ("use the service's setting", "not given").
nitpick_ignore += [
    ("py:class", "jet_trio._transfer.service._Unset"),
    ("py:class", "jet_trio._transfer.service._Default"),
]
# The docstrings are reStructuredText, with no Google or NumPy sections: napoleon would only
# misread an attribute docstring's "Some words: more" as a type.
extensions.remove("sphinx.ext.napoleon")
# Constructor parameters of the objects the library makes for you (Client, FileTransfer,
# IncomingOffer are never constructed by applications): private types.
nitpick_ignore += [
    ("py:class", "XMLStreamParser"),
    ("py:class", "DirectCandidates"),
    ("py:class", "SessionShell"),
    ("py:class", "Offer"),
    ("py:class", "WebRTCSettings"),
]
# Furo (the docs extra installs it): a current theme that reflows on narrow screens; the
# built-in alabaster keeps a build without it possible.
try:
    import furo  # noqa: F401
except ImportError:  # pragma: no cover - only without the docs extra
    html_theme = "alabaster"
else:
    html_theme = "furo"
