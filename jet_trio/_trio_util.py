"""Small trio helpers shared by the nursery-scoped entry points."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio

__all__ = ["leaves", "unwrap_group", "unwrapped_errors"]


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc`` (itself unless it is a group), depth first: the one walk of
    nested exception groups that the transfer layer and the CLI share."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in leaves(e)]
    return [exc]


def unwrap_group(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The single meaningful exception in a nursery's group (``Cancelled`` ignored), or the group
    itself when there are several."""
    found = [e for e in leaves(group) if not isinstance(e, trio.Cancelled)]
    return found[0] if len(found) == 1 else group


@contextmanager
def unwrapped_errors() -> Iterator[None]:
    """Around a nursery: let users see one clear exception instead of an exception group."""
    try:
        yield
    except BaseExceptionGroup as group:
        raise unwrap_group(group) from None
