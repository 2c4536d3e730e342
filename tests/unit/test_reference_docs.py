"""Every public name of jet_trio, jet_trio.plugin and jet_trio.testing is documented: it has a
docstring (or an attribute docstring) and appears in the API reference (docs/api.rst)."""

from __future__ import annotations

import ast
import enum
import importlib
import inspect
import sys
from pathlib import Path

import pytest

MODULES = ("jet_trio", "jet_trio.plugin", "jet_trio.testing")
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _public() -> list[tuple[str, str, object]]:
    out = []
    for modname in MODULES:
        module = importlib.import_module(modname)
        for name in module.__all__:
            out.append((modname, name, getattr(module, name)))
    return out


def _attr_docs(cls: type) -> set[str]:
    """Names with an attribute docstring in ``cls``'s class body, as autodoc reads them: a
    ``#:`` comment on the line before the assignment, or a string right after it."""
    path = sys.modules[cls.__module__].__file__
    assert path is not None
    source = Path(path).read_text(encoding="utf-8")
    lines = source.splitlines()
    body = next(
        node.body
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__
    )
    out = set()
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name = node.target.id
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
        else:
            continue
        after = body[i + 1] if i + 1 < len(body) else None
        string_after = (
            isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        )
        comment_before = lines[node.lineno - 2].strip().startswith("#:")
        if string_after or comment_before:
            out.add(name)
    return out


def _undocumented_members(cls: type) -> list[str]:
    if issubclass(cls, BaseException):
        own = {n for n in vars(cls) if not n.startswith("_")}
    else:
        own = {n for n in vars(cls) if not n.startswith("_")}
        own |= {n for n in getattr(cls, "__annotations__", {}) if not n.startswith("_")}
    attr_docs = _attr_docs(cls)
    missing = []
    for name in sorted(own):
        value = inspect.getattr_static(cls, name, None)
        if isinstance(value, property):
            doc = value.fget.__doc__ if value.fget else None
        elif isinstance(value, staticmethod | classmethod):
            doc = value.__func__.__doc__
        elif inspect.isfunction(value):
            doc = value.__doc__
        elif isinstance(cls, enum.EnumMeta) or name in getattr(cls, "__annotations__", {}):
            # An attribute docstring, or the class docstring describing it by name.
            described = f"``{name}``" in (cls.__doc__ or "")
            doc = "x" if name in attr_docs or described else None
        else:
            continue  # a plain class constant
        if not doc:
            missing.append(f"{cls.__qualname__}.{name}")
    return missing


@pytest.mark.parametrize(("module", "name", "obj"), _public(), ids=lambda v: str(v)[:40])
def test_public_name_is_documented(module: str, name: str, obj: object) -> None:
    api = (DOCS / "api.rst").read_text(encoding="utf-8")
    documented = (
        f":: {name}" in api  # autoclass/autofunction/data directive of the module's section
        or (module != "jet_trio" and f"automodule:: {module}" in api)
    )
    assert documented, f"{module}.{name} is not in docs/api.rst"
    if inspect.isclass(obj) or inspect.isfunction(obj):
        assert obj.__doc__, f"{module}.{name} has no docstring"
    if inspect.isclass(obj) and obj.__module__.startswith("jet_trio"):
        assert _undocumented_members(obj) == []
