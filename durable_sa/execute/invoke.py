"""Calling handlers that may be plain functions or coroutines, alone or concurrently.

Rules:
- A plain handler called alone runs in the calling thread, with no event loop involved.
- Coroutines run on one private event loop in a daemon thread, shared by the process;
  the caller blocks until they finish. This works the same whether or not the caller is
  itself inside an event loop.
- :func:`call_all` runs handlers concurrently: coroutines on that loop, plain functions
  in a thread pool, so parallel entries really overlap in both cases. When every handler
  is a plain function, the calling thread runs the first one itself while the pool runs
  the others (no hop through the event loop, one thread hand-off less).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Sequence

T = TypeVar("T")

_POOL_SIZE: Final = 64


class _LoopThread:
    """A lazily started event loop in a daemon thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: ThreadPoolExecutor | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="durable-sa-handlers", daemon=True
                )
                thread.start()
                self._loop = loop
            return self._loop

    @property
    def pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=_POOL_SIZE, thread_name_prefix="durable-sa-entry"
                )
            return self._pool

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result()


_RUNNER = _LoopThread()


def _forget_after_fork() -> None:
    """A forked child has none of the parent's threads: start its own loop and pool."""
    global _RUNNER  # noqa: PLW0603 - the process-wide runner is replaced in the child
    _RUNNER = _LoopThread()


os.register_at_fork(after_in_child=_forget_after_fork)


async def _await(value: Awaitable[T]) -> T:
    return await value


def call(fn: Callable[..., object], *args: object) -> object:
    """Call ``fn(*args)``; if it is a coroutine function (or returns an awaitable), await it."""
    result = fn(*args)
    if inspect.isawaitable(result):
        return _RUNNER.run(_await(result))
    return result


async def _one(fn: Callable[..., object], args: tuple[object, ...]) -> object:
    if _is_async(fn):
        result = fn(*args)
    else:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(_RUNNER.pool, functools.partial(fn, *args))
    if inspect.isawaitable(result):
        return await result
    return result


async def _gather(
    calls: Sequence[tuple[Callable[..., object], tuple[object, ...]]],
) -> list[object | BaseException]:
    return await asyncio.gather(*(_one(fn, args) for fn, args in calls), return_exceptions=True)


def _is_async(fn: Callable[..., object]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    )


def _captured(fn: Callable[..., object], args: tuple[object, ...]) -> object | BaseException:
    try:
        return call(fn, *args)
    except Exception as exc:  # noqa: BLE001 - handed back to the caller as a value
        return exc


def call_all(
    calls: Sequence[tuple[Callable[..., object], tuple[object, ...]]],
) -> list[object | BaseException]:
    """Run every ``fn(*args)`` concurrently; each slot holds a result or the exception raised."""
    if not calls:
        return []
    if any(_is_async(fn) for fn, _ in calls):
        return _RUNNER.run(_gather(calls))
    others = [_RUNNER.pool.submit(_captured, fn, args) for fn, args in calls[1:]]
    first = _captured(*calls[0])
    return [first, *(future.result() for future in others)]
