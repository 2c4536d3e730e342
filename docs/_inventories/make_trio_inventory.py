"""Make ``trio.inv``, the Sphinx inventory of trio's reference pages, for offline doc builds.

The jet-trio docs link to trio's documentation with intersphinx. Where the network is not
available (CI runners, packaging), ``conf.py`` falls back to this file. It lists the objects
that trio's reference pages document (``reference-*.rst`` of trio's ``docs/source``), with
their addresses under https://trio.readthedocs.io/en/stable/. Regenerate it for a new trio::

    python docs/_inventories/make_trio_inventory.py TRIO_CHECKOUT/docs/source TRIO_VERSION
"""

from __future__ import annotations

import re
import sys
import zlib
from pathlib import Path

_DIRECTIVE = re.compile(
    r"^\s*\.\. (?P<kind>auto)?(?P<what>class|function|exception|data|module|currentmodule"
    r"|decorator|attribute)::\s*(?P<name>[\w.]+)"
)
_ROLE = {
    "class": "class",
    "function": "function",
    "decorator": "function",
    "exception": "exception",
    "data": "data",
    "attribute": "attribute",
}


def entries(source: Path) -> list[tuple[str, str, str]]:
    """(name, py:role, page#anchor) of every object documented on trio's reference pages."""
    out: dict[str, tuple[str, str, str]] = {}
    for page in sorted(source.glob("reference-*.rst")):
        module = "trio"
        for line in page.read_text(encoding="utf-8").splitlines():
            m = _DIRECTIVE.match(line)
            if m is None:
                continue
            what, name = m["what"], m["name"]
            if what in ("module", "currentmodule"):
                module = name
                out.setdefault(name, (name, "py:module", f"{page.stem}.html#module-{name}"))
                continue
            full = name if name.startswith("trio.") else f"{module}.{name}"
            out.setdefault(full, (full, f"py:{_ROLE[what]}", f"{page.stem}.html#{full}"))
    return sorted(out.values())


def main(argv: list[str]) -> None:
    source, version = Path(argv[1]), argv[2]
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: Trio\n# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(f"{name} {role} 1 {uri} -\n" for name, role, uri in entries(source))
    target = Path(__file__).with_name("trio.inv")
    target.write_bytes(header.encode() + zlib.compress(body.encode()))
    print(f"{target}: {body.count(chr(10))} objects")


if __name__ == "__main__":
    main(sys.argv)
