"""The start decision: what ``start`` inserts, checked before anything is written.

Kept apart from :mod:`durable_sa.core.decide` (which decides what happens to a run that
exists) because it is the one decision made without a run: its input is the caller's.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from durable_sa.core.admission import check_concurrency_key
from durable_sa.core.endings import HOOKED_STATE
from durable_sa.core.plan import NewRun
from durable_sa.core.validation import check_text
from durable_sa.errors import DefinitionError, PayloadError

if TYPE_CHECKING:
    from durable_sa.core.admission import Limits
    from durable_sa.core.codec import JSONObject

MAX_IDEMPOTENCY_KEY: Final = 255
"""The length of the idempotency key's column."""


def decide_start(  # noqa: PLR0913 - a run's parts, all keyword-only
    *,
    workflow_name: str,
    workflow_version: str | None,
    total_steps: int,
    input: JSONObject,  # noqa: A002 - the reference's name
    now: datetime,
    idempotency_key: str | None = None,
    on_finish: bool = False,
    concurrency_key: str | None = None,
    priority: int = 0,
    limits: Limits | None = None,
    debounce_key: str | None = None,
    debounce: timedelta | None = None,
) -> NewRun:
    """The run that ``start`` inserts: running at step 0, its first job due ``now``.

    ``on_finish``: the workflow has an ``on_finish`` hook, which the run's initial state
    records (:mod:`durable_sa.core.endings`). ``limits``: the workflow's limits on active
    runs; with any, the run is counted (and may wait ``pending``) under them and under
    ``concurrency_key``. ``debounce_key`` with ``debounce``: the run is due (begins)
    ``debounce`` after ``now``, and starts of the same key until then collapse into it.

    Raises:
        PayloadError: ``idempotency_key`` is not a non-empty string that fits its column;
            ``debounce`` comes without ``debounce_key`` (see :func:`checked_window` for the
            reverse).

    """
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)
    due = now
    if debounce_key is not None:
        due = now + checked_window(debounce_key, debounce, idempotency_key)
    elif debounce is not None:
        msg = "debounce= needs debounce_key=<the key whose starts collapse into one run>"
        raise PayloadError(msg)
    return NewRun(
        workflow_name=workflow_name,
        workflow_version=workflow_version,
        total_steps=total_steps,
        input=input,
        due=due,
        idempotency_key=idempotency_key,
        state=dict(HOOKED_STATE) if on_finish else {},
        concurrency_key=concurrency_key,
        priority=priority,
        limits=limits if limits is not None and limits.any else None,
        debounce_key=debounce_key,
    )


def checked_window(
    debounce_key: object, debounce: object, idempotency_key: str | None
) -> timedelta:
    """The debounce window of a debounced start, checked.

    Raises:
        PayloadError: the key is not a string of 1 to 255 characters, the window is not
            a positive ``timedelta``, or an idempotency key is given too.

    """
    check_concurrency_key(debounce_key, "debounce_key")
    if not isinstance(debounce, timedelta) or debounce <= timedelta(0):
        shown = str(debounce) if isinstance(debounce, timedelta) else repr(debounce)
        msg = (
            "debounce must be a positive timedelta, the window in which starts with "
            f"debounce_key={debounce_key!r} collapse into one run (e.g. "
            f"debounce=timedelta(seconds=30)), not {shown}"
        )
        raise PayloadError(msg)
    if idempotency_key is not None:
        msg = "a start takes idempotency_key or debounce_key, not both"
        raise PayloadError(msg)
    return debounce


def check_idempotency_key(key: object) -> None:
    """A key that its column can hold and compare: 1 to 255 characters, no NUL, UTF-8.

    Raises:
        PayloadError: it is not such a string.

    """
    if not isinstance(key, str) or not key or len(key) > MAX_IDEMPOTENCY_KEY:
        msg = (
            "idempotency_key must be a non-empty string of at most "
            f"{MAX_IDEMPOTENCY_KEY} characters"
        )
        raise PayloadError(msg)
    try:
        check_text(key, "idempotency_key", limit=MAX_IDEMPOTENCY_KEY)
    except DefinitionError as exc:
        raise PayloadError(str(exc)) from None
