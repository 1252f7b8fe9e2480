"""Group commit: callers that submit at the same moment share one execution.

The first caller to arrive leads: it takes every pending submission, executes them as one
batch and hands each caller its own result. Callers arriving while a batch runs wait and
form the next batch, led by the first of them. A caller alone is executed at once, so
grouping never adds a wait when the system is idle; under load the batch grows by itself
to whatever arrived during one round trip.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

T = TypeVar("T")
R = TypeVar("R")


class _Pending(Generic[T, R]):
    __slots__ = ("done", "error", "item", "lead", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = threading.Event()
        self.lead = False
        self.result: R | None = None
        self.error: BaseException | None = None


class GroupExecutor(Generic[T, R]):
    """Runs ``execute`` over batches of submitted items, one batch at a time.

    ``execute`` receives the items of one batch and returns one result per item, in
    order; a result that is an exception is raised to that item's caller only. If
    ``execute`` itself raises, every caller of the batch gets the exception.
    """

    def __init__(
        self, execute: Callable[[Sequence[T]], Sequence[R | BaseException]], *, max_batch: int
    ) -> None:
        """Group submissions into batches of at most ``max_batch`` items."""
        self._execute = execute
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._pending: list[_Pending[T, R]] = []
        self._busy = False
        self.batches = 0
        self.items = 0

    def submit(self, item: T) -> R:
        """Execute ``item`` (with whatever else is pending) and return its result."""
        mine: _Pending[T, R] = _Pending(item)
        with self._lock:
            self._pending.append(mine)
            leading = not self._busy
            self._busy = True
        if not leading:
            mine.done.wait()
            if mine.lead:  # the previous leader handed us the next batch
                mine.done.clear()
                mine.lead = False
                self._lead()
        else:
            self._lead()
        if mine.error is not None:
            raise mine.error
        return mine.result  # type: ignore[return-value]

    def _lead(self) -> None:
        with self._lock:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
        try:
            results: Sequence[R | BaseException] = self._execute([p.item for p in batch])
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
            results = [exc] * len(batch)
        self.batches += 1
        self.items += len(batch)
        for pending, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                pending.error = result
            else:
                pending.result = result
        with self._lock:
            if self._pending:
                successor = self._pending[0]
                successor.lead = True
                successor.done.set()
            else:
                self._busy = False
        for pending in batch:
            pending.done.set()
