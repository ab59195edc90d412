"""Small asyncio helpers shared by step kinds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import TypeVar

T = TypeVar("T")


def first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error of a task group."""
    first = group.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


async def gather(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """Run concurrently in a TaskGroup, results in order; the first failure cancels the rest
    and is raised as itself (not wrapped in an ExceptionGroup)."""

    async def wrap(item: Awaitable[T]) -> T:
        return await item

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(wrap(a)) for a in awaitables]
    except BaseExceptionGroup as error:
        raise first_leaf(error) from None
    return [task.result() for task in tasks]
