"""What the report starts from: one :class:`Sample` per run of a scenario program.

:mod:`benchmarks.suite.measure` runs the programs and hands over samples, successful
or not. This module holds the words a sample is described in (systems, relay backends,
mixed workflows), the names a sample's scenario and its progress line go by, and the
errors of the samples that failed: everything about a program run before its figures
are read (:mod:`benchmarks.report.figures`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

SYSTEMS: Final = ("floor", "durable-sa", "dbos", "procrastinate")
PEERS: Final = ("dbos", "procrastinate")
OURS: Final = "durable-sa"

RELAY_BACKENDS: Final = ("jobs_table", "redis", "celery")
"""The relay scenario's backends, in table order: the jobs table is the baseline."""
RELAY_PREFIX: Final = "relay_"

MIXED_KINDS: Final = ("plain6", "mixed6")
"""The mixed scenario's workflows: its sample kinds, and the prefix of their scenarios."""

CONTROLS_KINDS: Final = (
    "controls_off",
    "controls_idle",
    "controls_on",
    "controls_limits",
    "controls_both",
)
"""The queue-controls scenario's sample kinds (and scenario prefixes): ``bench3`` with no
rate limit and nothing paused; ``bench3`` while a rate limit is set and another workflow
is paused (what a workflow that uses neither pays); ``bench3_limited``, whose first step
takes a grant of that limit (too high ever to defer), with the other workflow paused;
``bench3_capped``, with ``max_active`` and ``max_active_per_key`` far above what is ever
active, started over eight concurrency keys; ``bench3_capped_limited``, both the limits
and the rate-limited first step, with what ``controls_on`` sets."""

TRACING_KINDS: Final = ("tracing_off", "tracing_on")
"""The tracing scenario's sample kinds (and scenario prefixes): ``bench3`` with
OpenTelemetry installed and no tracer provider set (what every user without one pays),
and with a provider set in the worker (an in-memory exporter, which counts the spans and
keeps none, behind a batch processor) and in the process that starts the runs under a
span, so every step joins its trace."""

FAIRNESS: Final = "fairness"
"""The per-key fairness scenario's sample kind (and scenario prefix): one hot key's runs
started before four cold keys' runs, ``max_active_per_key=1``, one worker of C=4."""


@dataclass(frozen=True)
class Sample:
    """One run of one scenario program: its parsed JSON line, or why there is none.

    ``kind`` names the program and how to read its output: ``floor``, ``sqlite_floor``,
    ``throughput``, ``peer``, ``latency``, ``history``, ``memory``, ``fanout``, ``sqlite``,
    ``relay_<backend>`` (``relay_jobs_table``, ``relay_redis``, ``relay_celery``), or a
    workflow of the mixed scenario (``mixed6``, ``plain6``: durable-sa's or DBOS's), a
    mode of the controls scenario (:data:`CONTROLS_KINDS`), of the tracing scenario
    (:data:`TRACING_KINDS`), or ``fairness``.
    """

    kind: str
    system: str
    rep: int
    processes: int | None = None
    concurrency: int | None = None
    output: Mapping[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0


# --------------------------------------------------------------------------- naming


def config_suffix(processes: int | None, concurrency: int | None) -> str:
    """``_p1_c4`` for durable-sa workers, ``_c4`` for a peer, ``""`` for none."""
    suffix = ""
    if processes is not None:
        suffix += f"_p{processes}"
    if concurrency is not None:
        suffix += f"_c{concurrency}"
    return suffix


def headline_scenario(kind: str, processes: int | None, concurrency: int | None) -> str:
    """The scenario under which a program's main figure (and its failure) is listed."""
    names = {
        "latency": "latency_p50",
        "history": "history_throughput",
        "memory": "memory_growth",
        "fanout": "fanout_p50",
        "sqlite": "sqlite_throughput",
        "sqlite_floor": "sqlite_throughput",
        FAIRNESS: "fairness_jain",
    }
    if kind in names:
        return names[kind]
    if kind.startswith(RELAY_PREFIX) or kind in {*MIXED_KINDS, *CONTROLS_KINDS, *TRACING_KINDS}:
        return f"{kind}_throughput"
    return "throughput" + config_suffix(processes, concurrency)


def job_label(kind: str, system: str, processes: int | None, concurrency: int | None) -> str:
    """How progress lines name a measurement: ``durable-sa P=2 C=16``, ``floor sqlite``."""
    parts = [system]
    if kind.startswith(RELAY_PREFIX):
        parts += ["relay", kind.removeprefix(RELAY_PREFIX)]
    elif kind not in {"throughput", "peer", "floor"}:
        parts.append("sqlite" if kind.startswith("sqlite") else kind)
    if processes is not None:
        parts.append(f"P={processes}")
    if concurrency is not None:
        parts.append(f"C={concurrency}")
    return " ".join(parts)


# --------------------------------------------------------------------------- errors


def errors_of(samples: Iterable[Sample]) -> list[dict[str, Any]]:
    """One entry per failed program run: which, which repetition, and one line of why."""
    return [
        {
            "system": s.system,
            "scenario": headline_scenario(s.kind, s.processes, s.concurrency),
            "label": job_label(s.kind, s.system, s.processes, s.concurrency),
            "rep": s.rep,
            "error": one_line(s.error),
        }
        for s in samples
        if s.error is not None
    ]


def one_line(text: str, limit: int = 160) -> str:
    """The last non-empty line of ``text``, shortened to ``limit`` characters."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    line = lines[-1] if lines else "failed without a message"
    return line if len(line) <= limit else line[: limit - 1] + "…"
