"""The command's start-up and the garbage collector (``jet_trio._cli.startup``): only the
youngest generation is collected until the start-up ends; then what it made is frozen and the
thresholds are back. A program that never paused is never touched."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from jet_trio._cli import startup


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    thresholds, enabled = gc.get_threshold(), gc.isenabled()
    try:
        yield
    finally:
        startup._saved = None
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        if enabled:
            gc.enable()
        else:
            gc.disable()


def defaults(*thresholds: int) -> tuple[int, ...]:
    """Set the thresholds; what the interpreter keeps of them (3.14 drops the third)."""
    gc.set_threshold(*thresholds)
    return gc.get_threshold()


def test_the_start_up_collects_only_young_objects_then_freezes_what_it_made() -> None:
    before = defaults(700, 10, 10)
    startup.pause()
    young, middle, _ = gc.get_threshold()
    assert (young, gc.isenabled()) == (700, True)  # young garbage is still freed
    assert middle >= 100_000  # the older generations wait for that many young collections

    gc.collect(0)  # counts from zero: no young collection before the cycle is garbage
    garbage = _Cycle()
    gone = weakref.ref(garbage)
    del garbage  # unreachable, and only a collection finds it
    made = [[i] for i in range(2000)]  # objects of the start-up, alive at its end
    assert gone() is None  # young garbage is still freed while the start-up runs
    assert gc.get_freeze_count() == 0
    startup.resume()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() >= len(made)

    frozen = gc.get_freeze_count()
    startup.resume()  # the end of a second account's start-up in one process (demo)
    assert gc.get_freeze_count() == frozen and gc.get_threshold() == before


def test_a_program_that_never_paused_is_left_alone() -> None:
    before = defaults(500, 5, 5)
    startup.resume()  # open_account in a program using the CLI's modules, or in the tests
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_a_collector_turned_off_stays_off() -> None:
    gc.disable()
    before = defaults(700, 10, 10)
    startup.pause()
    assert gc.get_threshold() == before
    startup.resume()
    assert not gc.isenabled()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_pausing_twice_keeps_the_first_thresholds() -> None:
    before = defaults(700, 10, 10)
    startup.pause()
    startup.pause()
    startup.resume()
    assert gc.get_threshold() == before
