"""The Prometheus collector that reads durable-sa's tables at scrape time.

Rules:
- A scrape reads the database once (:func:`~durable_sa.metrics.readings.read`, one short
  transaction of bounded statements) and the families are built from that one value.
- Readings are kept ``cache_seconds`` (5 s by default): any number of scrapers, and
  dashboards polling ``/metrics``, cost the database one read per period. Concurrent
  scrapes wait for the read in progress rather than start their own.
- A failed read never fails the scrape: ``durable_sa_database_up`` is 0 and the next
  scrape tries again (a failure is not cached). Only a change is told: one WARNING when
  the database cannot be read (the driver's first line, never the SQL), one INFO when it
  can again, and ``on_database_change`` (the CLI prints one line) at the same moments.
- Per-queue series never vanish: every queue seen since the collector started (jobs,
  outbox, live workers' queues) and ``default`` have a sample, 0 when idle, so a
  dashboard shows 0 rather than "No data".
- Every family the collector can emit is described without touching the database, so
  registering the collector reads nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.exc import SQLAlchemyError

from durable_sa.core.status import RunStatus
from durable_sa.errors import InvalidArgumentError, first_line
from durable_sa.metrics.readings import QueueReading, Readings, check_tables, read

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from prometheus_client.metrics_core import Metric

    from durable_sa.facade import Durable

logger = logging.getLogger(__name__)

DEFAULT_CACHE_SECONDS = 5.0
DEFAULT_QUEUE = "default"

DatabaseListener = Callable[[SQLAlchemyError | None], None]
"""``listener(error)``: the database could not be read (``error``), or can again (``None``)."""

_FAMILIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("durable_sa_runs", "Runs by workflow and status.", ("workflow", "status")),
    ("durable_sa_jobs_due", "Jobs a worker could claim now, by queue.", ("queue",)),
    (
        "durable_sa_oldest_due_job_seconds",
        "How long the oldest claimable job of the queue has been due (0: none).",
        ("queue",),
    ),
    ("durable_sa_jobs_running", "Jobs a worker holds (lease not run out), by queue.", ("queue",)),
    (
        "durable_sa_jobs_lease_expired",
        "Jobs still claimed whose lease ran out (their worker died), by queue.",
        ("queue",),
    ),
    ("durable_sa_outbox_due", "Outbox rows a relay would publish now, by queue.", ("queue",)),
    (
        "durable_sa_oldest_outbox_due_seconds",
        "How long the oldest unpublished due outbox row has waited (0: none).",
        ("queue",),
    ),
    ("durable_sa_dead_letters_open", "Dead letters not requeued nor recovered.", ()),
    ("durable_sa_workers_live", "Workers whose heartbeat has not expired.", ()),
    ("durable_sa_worker_slots", "Concurrency of the live workers, summed.", ()),
    ("durable_sa_worker_slots_busy", "Jobs the live workers run now, summed.", ()),
    ("durable_sa_active_runs", "Active runs counted by the workflow's limit.", ("workflow",)),
    ("durable_sa_max_active_runs", "The workflow's max_active limit.", ("workflow",)),
    ("durable_sa_workflow_paused", "1 for each paused workflow.", ("workflow",)),
    (
        "durable_sa_schedule_lag_seconds",
        "How far an unpaused schedule is behind its next tick (0: not due yet).",
        ("schedule",),
    ),
    ("durable_sa_database_up", "1 when the last read of the database succeeded.", ()),
    ("durable_sa_metrics_read_seconds", "How long the last read of the database took.", ()),
)

_HELP = {name: (text, labels) for name, text, labels in _FAMILIES}


def _family(name: str) -> GaugeMetricFamily:
    text, labels = _HELP[name]
    return GaugeMetricFamily(name, text, labels=list(labels))


class DurableCollector:
    """Gauges of an engine's runs, queues, dead letters, workers, limits and schedules.

    Register it in a ``prometheus_client.CollectorRegistry`` (``metrics_app`` does)::

        registry.register(DurableCollector(engine))
    """

    def __init__(
        self,
        engine: Durable,
        *,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        on_database_change: DatabaseListener | None = None,
    ) -> None:
        """Read ``engine``'s database, at most once per ``cache_seconds`` (0: every scrape).

        ``on_database_change`` is called when a read fails after one that worked (or the
        first read fails), with the error, and with ``None`` when a read works again.

        Raises:
            InvalidArgumentError: ``cache_seconds`` is negative or not a number.

        """
        if (
            isinstance(cache_seconds, bool)
            or not isinstance(cache_seconds, int | float)
            or not cache_seconds >= 0
        ):
            msg = f"cache_seconds is a number of seconds, 0 or more, not {cache_seconds!r}"
            raise InvalidArgumentError(msg)
        self.engine = engine
        self.cache_seconds = float(cache_seconds)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cached: tuple[float, Readings, float] | None = None
        self._listener = on_database_change
        self._up: bool | None = None
        self._queues: set[str] = {DEFAULT_QUEUE}

    def __repr__(self) -> str:
        return f"<DurableCollector {self.engine.sa_engine.url!r} cache={self.cache_seconds:g}s>"

    def describe(self) -> list[Metric]:
        """The families, without samples: registering the collector reads nothing."""
        return [_family(name) for name, _, _ in _FAMILIES]

    def collect(self) -> Iterator[Metric]:
        """The families, from readings at most ``cache_seconds`` old."""
        up = _family("durable_sa_database_up")
        try:
            readings, took = self.readings()
        except SQLAlchemyError as exc:
            self._changed(exc)
            up.add_metric([], 0)
            yield up
            return
        self._changed(None)
        up.add_metric([], 1)
        yield up
        elapsed = _family("durable_sa_metrics_read_seconds")
        elapsed.add_metric([], took)
        yield elapsed
        with self._lock:
            self._queues.update(readings.jobs, readings.outbox, readings.worker_queues)
            queues = sorted(self._queues)
        yield from families(readings, queues=queues)

    def _changed(self, error: SQLAlchemyError | None) -> None:
        """Tell a change of the database's state (once, not at every scrape)."""
        up = error is None
        with self._lock:
            if self._up is up or (self._up is None and up):
                self._up = up
                return
            self._up = up
        if error is not None:
            logger.warning(
                "durable-sa metrics: cannot read the database (%s); "
                "durable_sa_database_up is 0 until it can",
                first_line(error),
                extra={"action": "metrics"},
            )
        else:
            logger.info("durable-sa metrics: the database can be read again")
        if self._listener is not None:
            self._listener(error)

    def check(self) -> None:
        """Prove the database can be read, cheaply: a connection and one statement, no row.

        What ``durable-sa metrics`` runs before it serves, so a wrong URL or a database
        without the tables ends it at once; a full read would cost what a scrape does.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: no connection, or a table a read needs is missing.

        """
        with self.engine.shell.reading() as session:
            check_tables(session)

    def readings(self) -> tuple[Readings, float]:
        """The cached readings and how long they took to read, read anew when too old."""
        with self._lock:
            now = self._monotonic()
            if self._cached is not None and now - self._cached[0] < self.cache_seconds:
                return self._cached[1], self._cached[2]
            started = time.perf_counter()
            with self.engine.shell.reading() as session:
                fresh = read(session, now=self.engine.shell.now())
            took = time.perf_counter() - started
            self._cached = (now, fresh, took)
            return fresh, took


def families(
    readings: Readings, *, queues: Iterable[str] = (DEFAULT_QUEUE,)
) -> Iterator[GaugeMetricFamily]:
    """The gauge families of ``readings`` (every status of a workflow seen, 0 or more).

    Every queue of ``queues`` and of ``readings`` has a sample in each per-queue family.
    """
    names = sorted({*queues, *readings.jobs, *readings.outbox})
    runs = _family("durable_sa_runs")
    for workflow in sorted({name for name, _ in readings.runs}):
        for status in RunStatus:
            runs.add_metric([workflow, status.value], readings.runs.get((workflow, status), 0))
    yield runs
    yield from _queue_families(
        readings.jobs,
        readings,
        names,
        "durable_sa_jobs_due",
        "durable_sa_oldest_due_job_seconds",
    )
    running, lapsed = _family("durable_sa_jobs_running"), _family("durable_sa_jobs_lease_expired")
    for queue in names:
        jobs = readings.jobs.get(queue, _IDLE)
        running.add_metric([queue], jobs.running)
        lapsed.add_metric([queue], jobs.lease_expired)
    yield running
    yield lapsed
    yield from _queue_families(
        readings.outbox,
        readings,
        names,
        "durable_sa_outbox_due",
        "durable_sa_oldest_outbox_due_seconds",
    )
    for name, value in (
        ("durable_sa_dead_letters_open", readings.dead_letters_open),
        ("durable_sa_workers_live", readings.workers_live),
        ("durable_sa_worker_slots", readings.workers_slots),
        ("durable_sa_worker_slots_busy", readings.workers_busy_slots),
    ):
        single = _family(name)
        single.add_metric([], value)
        yield single
    active, limit = _family("durable_sa_active_runs"), _family("durable_sa_max_active_runs")
    for workflow, counted in sorted(readings.limits.items()):
        active.add_metric([workflow], counted.active)
        if counted.max_active is not None:
            limit.add_metric([workflow], counted.max_active)
    yield active
    yield limit
    paused = _family("durable_sa_workflow_paused")
    for workflow in sorted(readings.paused):
        paused.add_metric([workflow], 1)
    yield paused
    lag = _family("durable_sa_schedule_lag_seconds")
    for schedule, seconds in sorted(readings.schedule_lag.items()):
        lag.add_metric([schedule], seconds)
    yield lag


_IDLE = QueueReading(due=0, oldest_due=None)


def _queue_families(
    queues: dict[str, QueueReading],
    readings: Readings,
    names: Iterable[str],
    due_name: str,
    oldest_name: str,
) -> Iterator[GaugeMetricFamily]:
    due, oldest = _family(due_name), _family(oldest_name)
    for queue in names:
        reading = queues.get(queue, _IDLE)
        due.add_metric([queue], reading.due)
        waited = 0.0
        if reading.oldest_due is not None:
            waited = max(0.0, (readings.now - reading.oldest_due).total_seconds())
        oldest.add_metric([queue], waited)
    yield due
    yield oldest
