"""Check the built distributions of jet-trio and its plugins (run by .ci/packages).

Usage: python .ci/check_dist.py DIST_DIR SOURCE_DIR...

For each source directory (the project root, plugins/<name>) DIST_DIR must hold exactly one
sdist and one wheel of that distribution, and:

* the wheel's metadata has a summary, a Markdown description, Requires-Python, an SPDX
  License-Expression, and only known trove classifiers; the license file is in the wheel and in
  the sdist, and is the project's LICENSE, byte for byte;
* the wheel has the package's ``py.typed`` and a ``jet_trio`` entry point (the core also the
  ``jet-trio`` console script);
* each plugin requires jet-trio with a lower and an upper bound, and the jet-trio built in the
  same run satisfies it; the core's ``omemo`` extra accepts the jet-trio-omemo built here.

Needs ``packaging`` and ``trove-classifiers`` (installed by .ci/packages).
"""

from __future__ import annotations

import email.message
import email.parser
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import trove_classifiers
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS: list[str] = []


def problem(message: str) -> None:
    PROBLEMS.append(message)
    print(f"  PROBLEM: {message}")


def one(dist_dir: Path, pattern: str) -> Path | None:
    found = sorted(dist_dir.glob(pattern))
    if len(found) != 1:
        problem(f"{dist_dir}/{pattern}: expected exactly one file, found {len(found)}")
        return None
    return found[0]


def check(
    dist_dir: Path, source: Path, built: dict[str, tuple[Version, email.message.Message]]
) -> None:
    project = tomllib.loads((source / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    name = canonicalize_name(project["name"])
    stem = name.replace("-", "_")
    print(f"{name} ({source.relative_to(ROOT) if source != ROOT else '.'})")
    wheel = one(dist_dir, f"{stem}-*-py3-none-any.whl")
    sdist = one(dist_dir, f"{stem}-*.tar.gz")
    if wheel is None or sdist is None:
        return
    license_text = (ROOT / "LICENSE").read_bytes()
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (info,) = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
        meta = email.parser.BytesParser().parsebytes(zf.read(f"{info}/METADATA"))
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
        license_files = [n for n in names if n.startswith(f"{info}/licenses/")]
        if [n.rsplit("/", 1)[1] for n in license_files] != ["LICENSE"]:
            problem(f"{wheel.name}: license files {license_files}, expected LICENSE")
        elif zf.read(license_files[0]) != license_text:
            problem(f"{wheel.name}: LICENSE differs from the project's LICENSE")
    version = Version(meta["Version"])
    print(f"  {wheel.name}, {sdist.name}: version {version}")
    for field in ("Summary", "Requires-Python", "License-Expression"):
        if not meta.get(field):
            problem(f"{wheel.name}: no {field}")
    if meta.get("Description-Content-Type") != "text/markdown":
        problem(f"{wheel.name}: description is not Markdown")
    if meta.get("License-File") != "LICENSE":
        problem(f"{wheel.name}: License-File is {meta.get('License-File')!r}")
    classifiers = meta.get_all("Classifier") or []
    if not classifiers:
        problem(f"{wheel.name}: no classifiers")
    for classifier in classifiers:
        if classifier not in trove_classifiers.classifiers:
            problem(f"{wheel.name}: unknown classifier {classifier!r}")
    if not meta.get_all("Project-URL"):
        # No canonical address of the project is declared anywhere yet: say so, but do not
        # make one up.
        print("  note: no Project-URL (the project declares no homepage or repository yet)")
    packages = {
        n.split("/")[0] for n in names if "/" in n and not n.split("/")[0].endswith(".dist-info")
    }
    for package in sorted(packages):
        if f"{package}/py.typed" not in names:
            problem(f"{wheel.name}: {package}/py.typed missing")
    if "[jet_trio]" not in entry_points:
        problem(f"{wheel.name}: no jet_trio entry point")
    if name == "jet-trio" and "jet-trio = " not in entry_points:
        problem(f"{wheel.name}: no jet-trio console script")
    with tarfile.open(sdist) as tf:
        top = sdist.name.removesuffix(".tar.gz")
        members = set(tf.getnames())
        for wanted in ("LICENSE", "README.md", "pyproject.toml", "PKG-INFO"):
            if f"{top}/{wanted}" not in members:
                problem(f"{sdist.name}: {wanted} missing")
    built[name] = (version, meta)


def check_ranges(built: dict[str, tuple[Version, email.message.Message]]) -> None:
    core = built.get("jet-trio")
    if core is None:
        problem("jet-trio was not built")
        return
    core_version, core_meta = core
    requires = [Requirement(r) for r in core_meta.get_all("Requires-Dist") or []]
    for name, (version, meta) in sorted(built.items()):
        if name == "jet-trio":
            continue
        deps = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
        core_deps = [r for r in deps if canonicalize_name(r.name) == "jet-trio"]
        if len(core_deps) != 1:
            problem(f"{name}: requires jet-trio {len(core_deps)} times, expected once")
            continue
        dep = core_deps[0]
        operators = {s.operator for s in dep.specifier}
        if not operators & {">=", ">", "~=", "=="} or not operators & {"<", "<=", "~=", "=="}:
            problem(f"{name}: jet-trio{dep.specifier} is not a bounded range")
        if not dep.specifier.contains(core_version, prereleases=True):
            problem(f"{name}: jet-trio{dep.specifier} does not accept jet-trio {core_version}")
        print(f"{name} {version}: requires jet-trio{dep.specifier} (built: {core_version})")
        extra = [r for r in requires if canonicalize_name(r.name) == name]
        for r in extra:
            if not r.specifier.contains(version, prereleases=True):
                problem(f"jet-trio: {r} does not accept the {name} {version} built here")
            print(f"jet-trio: {r}")
    if not any(canonicalize_name(r.name) == "jet-trio-omemo" for r in requires):
        problem("jet-trio: no omemo extra")


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    dist_dir = Path(argv[1])
    built: dict[str, tuple[Version, email.message.Message]] = {}
    for source in argv[2:]:
        check(dist_dir, Path(source).resolve(), built)
    check_ranges(built)
    if PROBLEMS:
        print(f"{len(PROBLEMS)} problem(s) in the distributions")
        return 1
    print("distributions: metadata complete")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
