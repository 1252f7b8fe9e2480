"""From samples to figures: what a program's JSON line measured, over all repetitions.

A successful :class:`~benchmarks.report.samples.Sample` becomes :class:`Metric` objects
(one figure each, named by scenario, e.g. ``throughput_p1_c1``); the metrics of the same
system and scenario across repetitions become one :class:`Result` (median, min, max),
in table order. Everything downstream (targets, tables, plots, the JSON) reads results
through :func:`find` and :func:`median_of`, and writes a figure with :func:`fmt`. A
figure a program did not report is simply absent here: whoever needs it says "not
measured".
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from benchmarks.report.samples import (
    CONTROLS_KINDS,
    FAIRNESS,
    MIXED_KINDS,
    RELAY_PREFIX,
    SYSTEMS,
    TRACING_KINDS,
    config_suffix,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from benchmarks.report.samples import Sample

WF_PER_S: Final = "wf/s"
MS: Final = "ms"
MSG_PER_S: Final = "msg/s"
ROWS: Final = "rows"
INDEX: Final = "index"

# Order of rows in the tables: by family (the scenario name's prefix), then system, P, C.
_FAMILIES: Final = (
    "throughput",
    "cpu_per_wf",
    "claim_p50",
    "latency",
    "history",
    "memory",
    "fanout",
    "sqlite",
    "relay",
    *MIXED_KINDS,
    *CONTROLS_KINDS,
    *TRACING_KINDS,
    FAIRNESS,
)


@dataclass(frozen=True)
class Metric:
    """One figure read from one sample."""

    system: str
    scenario: str
    value: float
    unit: str
    n: int
    config: Mapping[str, float] = field(default_factory=dict)
    series: tuple[tuple[float, float], ...] = ()
    """Points over time behind the figure (the relay's backlog), if any."""


@dataclass(frozen=True)
class Result:
    """The figures of one system and scenario over all repetitions."""

    system: str
    scenario: str
    unit: str
    n: int
    samples: tuple[float, ...]
    config: Mapping[str, float] = field(default_factory=dict)
    series: tuple[tuple[tuple[float, float], ...], ...] = ()
    """One series per repetition that had one (see :attr:`Metric.series`)."""

    @property
    def median(self) -> float:
        """The figure reported: the median over repetitions."""
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        """Smallest sample."""
        return min(self.samples)

    @property
    def max(self) -> float:
        """Largest sample."""
        return max(self.samples)


def _throughput_metrics(
    out: Mapping[str, Any], prefix: str, suffix: str, *, cpu: bool = True
) -> list[tuple[str, Any, str]]:
    """wf/s end to end, wf/s of the drain alone, client CPU per workflow, claim p50."""
    figures = [
        (f"{prefix}throughput{suffix}", out.get("wf_per_s"), WF_PER_S),
        (f"{prefix}drain_throughput{suffix}", out.get("drain_wf_per_s"), WF_PER_S),
    ]
    if cpu:
        figures.append((f"{prefix}cpu_per_wf{suffix}", out.get("cpu_ms_per_wf"), MS))
    figures.append((f"{prefix}claim_p50{suffix}", out.get("claim_p50_ms"), MS))
    return figures


_NAMED_FIGURES: Final[Mapping[str, tuple[tuple[str, str, str], ...]]] = {
    "history": (
        ("history_throughput", "wf_per_s", WF_PER_S),
        ("history_drain_throughput", "drain_wf_per_s", WF_PER_S),
        ("history_claim_p50", "claim_p50_ms", MS),
        ("history_cpu_per_wf", "cpu_ms_per_wf", MS),
    ),
    "latency": (
        ("latency_p50", "p50_ms", MS),
        ("latency_p99", "p99_ms", MS),
        ("latency_first_call_p50", "first_call_p50_ms", MS),
        ("latency_first_call_p99", "first_call_p99_ms", MS),
    ),
    "memory": (
        ("memory_growth", "growth_pct", "%"),
        ("memory_rss_first", "rss_mb_first", "MB"),
        ("memory_rss_last", "rss_mb_last", "MB"),
    ),
    "fanout": (
        ("fanout_p50", "p50_ms", MS),
        ("fanout_p99", "p99_ms", MS),
    ),
    FAIRNESS: (
        ("fairness_jain", "jain", INDEX),
        ("fairness_cold_hot", "cold_hot_ratio", "x"),
        ("fairness_period", "period_s", "s"),
    ),
}
"""The kinds whose figures are keys of the JSON line as they are: (scenario, key, unit)."""


def metrics_from_sample(sample: Sample) -> list[Metric]:
    """The figures a successful sample holds (none for a failed one).

    Absent keys are skipped (``claim_p50_ms`` may be absent); a key the kind requires
    being absent just means fewer figures: the table then shows the scenario as missing.
    """
    out = sample.output
    if out is None:
        return []
    suffix = config_suffix(sample.processes, sample.concurrency)
    kind = sample.kind
    figures: list[tuple[str, Any, str]]
    if kind in {"throughput", "peer"}:
        figures = _throughput_metrics(out, "", suffix)
    elif kind == "floor":
        figures = _throughput_metrics(out, "", "", cpu=False)
    elif kind in {"sqlite", "sqlite_floor", *MIXED_KINDS, *CONTROLS_KINDS, *TRACING_KINDS}:
        prefix = "sqlite_" if kind.startswith("sqlite") else f"{kind}_"
        figures = _throughput_metrics(out, prefix, "", cpu=kind != "sqlite_floor")
    elif kind in _NAMED_FIGURES:
        figures = [(name, out.get(key), unit) for name, key, unit in _NAMED_FIGURES[kind]]
    elif kind.startswith(RELAY_PREFIX):
        figures = _relay_figures(kind, out)
    else:
        msg = f"unknown sample kind {kind!r}"
        raise ValueError(msg)
    config = {
        key: value
        for key, value in (
            ("processes", sample.processes),
            ("concurrency", sample.concurrency),
            ("entry_ms", out.get("entry_ms")),
            ("entries", out.get("entries")),
            ("history_runs", out.get("history_runs")),
            ("runs", out.get("runs_last")),
            ("batch_size", out.get("batch_size")),
            ("hot_runs", out.get("hot")),
            ("cold_runs", out.get("cold")),
        )
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    n = out.get("n", out.get("runs_last", 0))
    series = _series(out.get("backlog_series")) if kind.startswith(RELAY_PREFIX) else ()
    return [
        Metric(
            system=sample.system,
            scenario=scenario,
            value=float(value),
            unit=unit,
            n=int(n) if isinstance(n, int | float) else 0,
            config=config,
            series=series if scenario.endswith("_backlog_max") else (),
        )
        for scenario, value, unit in figures
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]


def _relay_figures(kind: str, out: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """Drain wf/s, published msg/s, backlog after warm-up and at the end, bounded (1/0)."""
    bounded = out.get("bounded")
    return [
        (f"{kind}_throughput", out.get("wf_per_s"), WF_PER_S),
        (f"{kind}_published", out.get("published_per_s"), MSG_PER_S),
        (f"{kind}_backlog_max", out.get("backlog_max_after_warmup"), ROWS),
        (f"{kind}_backlog_final", out.get("backlog_final"), ROWS),
        (f"{kind}_bounded", float(bounded) if isinstance(bounded, bool) else None, "1=yes"),
    ]


def _series(points: Any) -> tuple[tuple[float, float], ...]:  # noqa: ANN401 - parsed JSON
    """``[[t, value], ...]`` from a program's JSON as a tuple of pairs (bad points dropped)."""
    if not isinstance(points, list | tuple):
        return ()
    return tuple(
        (float(p[0]), float(p[1]))
        for p in points
        if isinstance(p, list | tuple)
        and len(p) >= 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in p[:2])
    )


def aggregate(samples: Iterable[Sample]) -> list[Result]:
    """One :class:`Result` per (system, scenario), in table order."""
    grouped: dict[tuple[str, str], list[Metric]] = {}
    for sample in samples:
        for metric in metrics_from_sample(sample):
            grouped.setdefault((metric.system, metric.scenario), []).append(metric)
    results = [
        Result(
            system=system,
            scenario=scenario,
            unit=metrics[0].unit,
            n=metrics[0].n,
            samples=tuple(m.value for m in metrics),
            config=metrics[0].config,
            series=tuple(m.series for m in metrics if m.series),
        )
        for (system, scenario), metrics in grouped.items()
    ]
    return sorted(results, key=_row_key)


def _row_key(result: Result) -> tuple[int, int, float, float, int, str]:
    family = next(
        (i for i, name in enumerate(_FAMILIES) if result.scenario.startswith(name)),
        len(_FAMILIES),
    )
    system = SYSTEMS.index(result.system) if result.system in SYSTEMS else len(SYSTEMS)
    figure = next(
        (i for i, word in enumerate(("throughput", "cpu_per_wf")) if word in result.scenario), 2
    )
    return (
        family,
        system,
        result.config.get("processes", 0),
        result.config.get("concurrency", 0),
        figure,
        result.scenario,
    )


def find(results: Sequence[Result], system: str, scenario: str) -> Result | None:
    """The result of ``system`` for ``scenario``, if it was measured."""
    return next((r for r in results if r.system == system and r.scenario == scenario), None)


def median_of(results: Sequence[Result], system: str, scenario: str) -> float | None:
    """The median of ``system`` for ``scenario``, if it was measured."""
    result = find(results, system, scenario)
    return result.median if result is not None else None


def fmt(value: float | None) -> str:
    """Three significant figures, no exponent: ``1234``, ``123``, ``12.3``, ``1.23``."""
    if value is None:
        return "-"
    size = abs(value)
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 0.01:
        return f"{value:.2f}"
    return f"{value:.3f}"
