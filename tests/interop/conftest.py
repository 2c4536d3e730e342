"""Fixtures of the Dino interop tests (``pytest -m interop``; run them with
``bash tests/interop/run.sh``, which installs the packages, creates the network namespace and
runs pytest inside it).

``dino_lab`` (session)
    A :class:`Lab`: a private Prosody (c2s 127.0.0.1:5222, proxy65 :5000) with accounts alice,
    bob, carol in mutual rosters, an Xvfb and Dino 0.4.2 logged in as ``alice`` (resource
    ``dino``) from a fresh profile. Everything is stopped at the end of the session.

The fixture skips, naming the missing piece, when the lab cannot run here (tools not installed,
not root, not inside the lab's network namespace); with ``CI=true`` it fails instead. When a test
fails, the Prosody log (every stanza, ``mod_stanza_debug``) and Dino's ``--print-xmpp`` output of
that test are added to the report.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import trustme

from ._lab import (
    Dino,
    DinoAccount,
    Lab,
    LabUnavailable,
    Xvfb,
    check_namespace,
    dino_version_problem,
    missing_tools,
    start_prosody,
    trust_ca,
)

_LOG_OFFSETS = pytest.StashKey[dict[str, int]]()


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"Dino lab unavailable: {reason} (CI=true: must not skip)", pytrace=False)
    pytest.skip(f"Dino lab unavailable: {reason}")


@pytest.fixture(scope="session")
def dino_lab() -> Iterator[Lab]:
    missing = missing_tools()
    if missing:
        _unavailable("missing " + ", ".join(missing))
    problem = dino_version_problem()
    if problem:
        _unavailable(problem)
    try:
        check_namespace()
    except LabUnavailable as exc:
        _unavailable(str(exc))
    keep = os.environ.get("JET_TRIO_INTEROP_DIR")
    base = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="jet-trio-interop-"))
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    ca = trustme.CA()
    trust_ca(ca)
    prosody = xvfb = dino = None
    try:
        prosody = start_prosody(base / "prosody", ca)
        xvfb = Xvfb(base / "xvfb.log")
        display = xvfb.start()
        dino = Dino(
            base / "home-alice",
            display,
            DinoAccount("alice@localhost", prosody.accounts["alice"]),
        )
        dino.provision()
        lab = Lab(prosody, dino, base)
        lab.start_dino()
        yield lab
    except LabUnavailable as exc:
        pytest.fail(f"could not bring the Dino lab up: {exc}", pytrace=False)
    finally:
        if dino is not None:
            dino.stop()
        if xvfb is not None:
            xvfb.stop()
        if prosody is not None:
            prosody.stop()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    """Turn SIGTERM (a CI time-out) into KeyboardInterrupt, so the fixtures still stop Dino,
    Xvfb and Prosody."""
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Unencrypted tests first, then JET-OMEMO (C before D, as written): the OMEMO tests switch
    Dino's conversation to OMEMO and D relies on the OMEMO session C leaves in Dino."""
    here = Path(__file__).parent
    items.sort(key=lambda item: item.path.is_relative_to(here) and "omemo" in item.path.name)


# -- logs in the failure report --------------------------------------------------------------


def _lab_of(item: pytest.Item) -> Lab | None:
    lab = getattr(item, "funcargs", {}).get("dino_lab")
    return lab if isinstance(lab, Lab) else None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    lab = _lab_of(item)
    if lab is None:
        return report
    if report.when == "setup" and not report.failed:
        item.stash[_LOG_OFFSETS] = {str(p): _size(p) for p in lab.log_paths}
    elif report.failed:
        offsets = item.stash.get(_LOG_OFFSETS, {})
        for path in lab.log_paths:
            try:
                with path.open("rb") as f:
                    f.seek(offsets.get(str(path), 0))
                    text = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            lines = text.splitlines()[-400:]
            report.sections.append((f"lab log {path} ({report.when})", "\n".join(lines)))
    return report
