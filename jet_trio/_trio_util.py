"""Small trio helpers shared by the nursery-scoped entry points."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio

__all__ = ["unwrap_group", "unwrapped_errors"]


def unwrap_group(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The single meaningful exception in a nursery's group (``Cancelled`` ignored), or the group
    itself when there are several."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for e in exc.exceptions:
                walk(e)
        elif not isinstance(exc, trio.Cancelled):
            leaves.append(exc)

    walk(group)
    return leaves[0] if len(leaves) == 1 else group


@contextmanager
def unwrapped_errors() -> Iterator[None]:
    """Around a nursery: let users see one clear exception instead of an exception group."""
    try:
        yield
    except BaseExceptionGroup as group:
        raise unwrap_group(group) from None
