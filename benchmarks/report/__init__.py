"""From raw measurements to figures: aggregation, ratios, targets, tables, JSON, docs.

Rules of this package:

* Pure functions only, apart from :func:`update_docs` (rewrites the marked part of a
  Markdown page); the plots are in :mod:`benchmarks.plots`. Nothing here starts a process, reads a
  clock or talks to a database: :mod:`benchmarks.run` does that and hands over
  :class:`Sample` objects, one per program run (successful or not).
* A program's JSON line becomes :class:`Metric` objects (one figure each, named by
  scenario, e.g. ``throughput_p1_c1``); metrics of the same system and scenario across
  repetitions become one :class:`Result` (median, min, max).
* Missing figures are never an error here: a ratio or target that lacks one of its
  inputs is ``None`` ("not measured"), and the table says so.
* The JSON written to ``benchmarks/results/latest.json`` has exactly the keys
  ``machine``, ``results``, ``ratios``, ``targets`` and ``errors`` (see :func:`to_json`).
* The relay scenario (:mod:`benchmarks.relay_bench`, sample kinds ``relay_<backend>``)
  has a table of its own (:func:`relay_rows`), between its own markers in the docs, and
  a plot of its own (:func:`benchmarks.plots.plot_relay`); its figures are results like
  any other, the backlog series of each repetition ride along on its ``backlog_max``
  result, and its verdicts are targets. :mod:`benchmarks.report.relay_backlog` judges one
  drain's backlog.
* The mixed scenario (sample kinds ``mixed6`` and ``plain6``, :data:`MIXED_KINDS`) gives
  results and targets here like any other, but its table is its own, between its own
  markers, and so is its plot: see :mod:`benchmarks.report_mixed` and
  :func:`benchmarks.plots.plot_mixed`.
"""

from __future__ import annotations

import operator
import re
import statistics
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from pathlib import Path

TABLE_START: Final = "<!-- bench:table:start -->"
TABLE_END: Final = "<!-- bench:table:end -->"
RELAY_START: Final = "<!-- bench:relay:start -->"
RELAY_END: Final = "<!-- bench:relay:end -->"

SYSTEMS: Final = ("floor", "durable-sa", "dbos", "procrastinate")
PEERS: Final = ("dbos", "procrastinate")
CONCURRENCIES: Final = (1, 4, 16)

WF_PER_S: Final = "wf/s"
MS: Final = "ms"
MSG_PER_S: Final = "msg/s"
ROWS: Final = "rows"

RELAY_BACKENDS: Final = ("jobs_table", "redis", "celery")
"""The relay scenario's backends, in table order: the jobs table is the baseline."""
RELAY_PREFIX: Final = "relay_"

MIXED_KINDS: Final = ("plain6", "mixed6")
"""The mixed scenario's workflows: its sample kinds, and the prefix of their scenarios."""

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
)


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Sample:
    """One run of one scenario program: its parsed JSON line, or why there is none.

    ``kind`` names the program and how to read its output: ``floor``, ``sqlite_floor``,
    ``throughput``, ``peer``, ``latency``, ``history``, ``memory``, ``fanout``, ``sqlite``,
    ``relay_<backend>`` (``relay_jobs_table``, ``relay_redis``, ``relay_celery``), or a
    workflow of the mixed scenario (``mixed6``, ``plain6``: durable-sa's or DBOS's).
    """

    kind: str
    system: str
    rep: int
    processes: int | None = None
    concurrency: int | None = None
    output: Mapping[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0


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


@dataclass(frozen=True)
class Target:
    """One goal, judged on medians. ``passed`` is ``None`` when an input is missing.

    ``row`` is the (system, scenario) whose figure the goal judges: the table shows the
    verdict on that row.
    """

    id: str
    scenario: str
    text: str
    row: tuple[str, str]
    measured: float | None
    op: str
    required: float
    unit: str
    passed: bool | None
    need: str = ""
    detail: str = ""

    @property
    def verdict(self) -> str:
        """``PASS``, ``FAIL`` or ``n/a`` (not measured)."""
        if self.passed is None:
            return "n/a"
        return "PASS" if self.passed else "FAIL"


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
    }
    if kind in names:
        return names[kind]
    if kind.startswith(RELAY_PREFIX) or kind in MIXED_KINDS:
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


# --------------------------------------------------------------------------- metrics


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
    elif kind in {"sqlite", "sqlite_floor", *MIXED_KINDS}:  # named by the kind, no P or C
        prefix = "sqlite_" if kind.startswith("sqlite") else f"{kind}_"
        figures = _throughput_metrics(out, prefix, "", cpu=kind != "sqlite_floor")
    elif kind == "history":
        figures = [
            ("history_throughput", out.get("wf_per_s"), WF_PER_S),
            ("history_drain_throughput", out.get("drain_wf_per_s"), WF_PER_S),
            ("history_claim_p50", out.get("claim_p50_ms"), MS),
            ("history_cpu_per_wf", out.get("cpu_ms_per_wf"), MS),
        ]
    elif kind == "latency":
        figures = [
            ("latency_p50", out.get("p50_ms"), MS),
            ("latency_p99", out.get("p99_ms"), MS),
            ("latency_first_call_p50", out.get("first_call_p50_ms"), MS),
            ("latency_first_call_p99", out.get("first_call_p99_ms"), MS),
        ]
    elif kind == "memory":
        figures = [
            ("memory_growth", out.get("growth_pct"), "%"),
            ("memory_rss_first", out.get("rss_mb_first"), "MB"),
            ("memory_rss_last", out.get("rss_mb_last"), "MB"),
        ]
    elif kind == "fanout":
        figures = [
            ("fanout_p50", out.get("p50_ms"), MS),
            ("fanout_p99", out.get("p99_ms"), MS),
        ]
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


# --------------------------------------------------------------------------- ratios, targets


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` when either is missing or zero."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def ratios(results: Sequence[Result]) -> dict[str, float | None]:
    """durable-sa with one worker (P=1, C=1) against the floor and each peer (C=1)."""
    ours = median_of(results, "durable-sa", "throughput_p1_c1")
    return {
        "floor_1w": ratio(ours, median_of(results, "floor", "throughput")),
        "dbos_1w": ratio(ours, median_of(results, "dbos", "throughput_c1")),
        "procrastinate_1w": ratio(ours, median_of(results, "procrastinate", "throughput_c1")),
    }


def best_under_load(results: Sequence[Result]) -> Result | None:
    """durable-sa's best end-to-end throughput with C=16 or more than one process."""
    loaded = [
        r
        for r in results
        if r.system == "durable-sa"
        and re.fullmatch(r"throughput_p\d+_c\d+", r.scenario)
        and (r.config.get("concurrency", 1) >= 16 or r.config.get("processes", 1) > 1)
    ]
    return max(loaded, key=lambda r: r.median, default=None)


_OPS: Final[Mapping[str, Callable[[float, float], bool]]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}
_SIGNS: Final = {">=": "≥", "<=": "≤", "<": "<"}
OURS: Final = "durable-sa"


def judge(id_: str, text: str, row: str, measured: float | None, need: str) -> Target:
    """The target ``id_`` on durable-sa's ``row``: ``measured`` against ``need``.

    ``need`` reads ``"OP REQUIRED UNIT [OF]"``, e.g. ``">= 2.5 x floor"`` or ``"<= 4 ms"``;
    a ``measured`` of ``None`` (an input is missing) is not judged.
    """
    op, required_text, unit, *of = need.split(maxsplit=3)
    required = float(required_text)
    suffix = "x" if unit == "x" else f" {unit}"
    wanted = f"{_SIGNS[op]} {fmt(required)}{suffix}" + "".join(f" {o}" for o in of)
    target = Target(
        id_, id_.split("_", 1)[0], text, (OURS, row), measured, op, required, unit, None, wanted
    )
    if measured is None:
        return target
    passed = _OPS[op](measured, required)
    return replace(target, passed=passed, detail=f"{fmt(measured)}{suffix} (needs {wanted})")


def _claim_target(results: Sequence[Result]) -> Target:
    """History claim p50 within 10 % of scenario 2's, or within 0.1 ms when both are tiny.

    Claim times are fractions of a millisecond, where 10 % is within the noise; the
    detail says which of the two allowances the figure met.
    """
    base = median_of(results, OURS, "claim_p50_p1_c1")
    history = median_of(results, OURS, "history_claim_p50")
    text = "history: claim p50 within 10 % (or 0.1 ms) of throughput P=1 C=1"
    target = judge("s4_claim", text, "history_claim_p50", ratio(history, base), "<= 1.1 x")
    target = replace(target, need="≤ +10 % or ≤ +0.1 ms of claim_p50_p1_c1")
    if history is None or base is None or target.measured is None:
        return target
    delta = (
        f"{fmt(history)} vs {fmt(base)} ms ({history - base:+.3f} ms, {target.measured - 1:+.1%})"
    )
    if target.passed:
        return replace(target, detail=f"{delta}: within 10 %")
    if history - base <= 0.1:
        return replace(target, passed=True, detail=f"{delta}: within 0.1 ms absolute")
    return replace(target, detail=f"{delta}: beyond 10 % and 0.1 ms")


def targets(results: Sequence[Result]) -> list[Target]:
    """Every goal of the suite, judged on the medians at hand."""
    r = ratios(results)
    loaded = best_under_load(results)
    fanout = find(results, OURS, "fanout_p50")
    entry_ms = float(fanout.config.get("entry_ms", 10)) if fanout is not None else 10.0

    def ours(scenario: str) -> float | None:
        return median_of(results, OURS, scenario)

    def against_floor(value: float | None, floor_scenario: str = "throughput") -> float | None:
        return ratio(value, median_of(results, "floor", floor_scenario))

    one_worker = "throughput_p1_c1"
    under_load = loaded.scenario if loaded else "throughput_p1_c16"
    return [
        judge("s2_floor_1w", "durable-sa P=1 C=1 ≥ 1.0x floor", one_worker, r["floor_1w"],
              ">= 1.0 x floor"),
        judge("s2_dbos_1w", "durable-sa P=1 C=1 ≥ 3x DBOS C=1", one_worker, r["dbos_1w"],
              ">= 3 x dbos"),
        judge("s2_procrastinate_1w", "durable-sa P=1 C=1 ≥ 2.5x Procrastinate C=1", one_worker,
              r["procrastinate_1w"], ">= 2.5 x procrastinate"),
        judge("s2_best_under_load", f"durable-sa best under load ({under_load}) ≥ 2.5x floor",
              under_load, against_floor(loaded.median if loaded else None), ">= 2.5 x floor"),
        judge("s2_cpu_per_wf", "client CPU per workflow (P=1 C=1 worker) ≤ 1.0 ms",
              "cpu_per_wf_p1_c1", ours("cpu_per_wf_p1_c1"), "<= 1.0 ms"),
        judge("s3_latency_p50", "start → completed p50 ≤ 4 ms", "latency_p50",
              ours("latency_p50"), "<= 4 ms"),
        judge("s3_first_call_p50", "start → first step call p50 ≤ 2 ms",
              "latency_first_call_p50", ours("latency_first_call_p50"), "<= 2 ms"),
        judge("s4_throughput", "history: throughput within 10 % of throughput P=1 C=1",
              "history_throughput", ratio(ours("history_throughput"), ours(one_worker)),
              ">= 0.9 x throughput_p1_c1"),
        _claim_target(results),
        judge("s5_memory", "worker RSS growth < 10 %", "memory_growth", ours("memory_growth"),
              "< 10 %"),
        judge("s6_fanout", f"fan-out p50 ≤ 3x one entry ({3 * entry_ms:g} ms)", "fanout_p50",
              ours("fanout_p50"), f"<= {3 * entry_ms:g} ms"),
        judge("s7_sqlite", "SQLite ≥ 0.7x SQLite floor", "sqlite_throughput",
              against_floor(ours("sqlite_throughput"), "sqlite_throughput"), ">= 0.7 x floor"),
        *(_relay_target(results, backend) for backend in RELAY_BACKENDS[1:]),
        *(_relay_speed(results, backend, need) for backend, need in RELAY_SPEED.items()),
        judge("mixed_vs_plain", "mixed6 ≥ 0.7x plain6 (one worker, P=1 C=1)",
              "mixed6_throughput", ratio(ours("mixed6_throughput"), ours("plain6_throughput")),
              ">= 0.7 x plain6"),
        judge("mixed_vs_dbos", "durable-sa mixed6 ≥ 5x DBOS mixed6 (C=1)", "mixed6_throughput",
              ratio(ours("mixed6_throughput"), median_of(results, "dbos", "mixed6_throughput")),
              ">= 5 x dbos"),
    ]  # fmt: skip


RELAY_SPEED: Final = {"redis": 0.5, "celery": 0.3}
"""The least drain throughput of each relay backend, as a fraction of the jobs table's."""


def _relay_speed(results: Sequence[Result], backend: str, need: float) -> Target:
    """A relay backend drains at least ``need`` times as fast as the jobs table."""
    row = f"{RELAY_PREFIX}{backend}_throughput"
    base = median_of(results, OURS, f"{RELAY_PREFIX}jobs_table_throughput")
    return judge(
        f"relay_{backend}_speed",
        f"{backend} drain ≥ {fmt(need)}x the jobs table (P=1 C=4)",
        row,
        ratio(median_of(results, OURS, row), base),
        f">= {need} x jobs_table",
    )


def _relay_target(results: Sequence[Result], backend: str) -> Target:
    """The relay keeps up through ``backend``: its backlog bounded in every repetition.

    ``measured`` is the fraction of the judged repetitions that were bounded; a
    repetition too short to judge has no ``bounded`` figure and does not count.
    """
    row = f"{RELAY_PREFIX}{backend}_bounded"
    text = f"relay keeps up ({backend}): outbox backlog bounded in every repetition"
    need = "bounded in every repetition"
    target = Target(
        f"relay_{backend}", "relay", text, (OURS, row), None, ">=", 1.0, "of reps", None, need
    )
    found = find(results, OURS, row)
    if found is None:
        return target
    bounded = sum(1 for value in found.samples if value)
    peak = find(results, OURS, f"{RELAY_PREFIX}{backend}_backlog_max")
    detail = f"{bounded} of {len(found.samples)} repetitions bounded"
    if peak is not None:
        batch = peak.config.get("batch_size")
        detail += f"; backlog after warm-up ≤ {peak.max:.0f} rows"
        detail += f" (batch {batch:g})" if batch is not None else ""
    return replace(
        target,
        measured=bounded / len(found.samples),
        passed=bounded == len(found.samples),
        detail=detail,
    )


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


# --------------------------------------------------------------------------- rows and tables


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


def _comparisons(result: Result, results: Sequence[Result]) -> dict[str, float]:
    """Ratios of a wf/s row: against its floor, and durable-sa rows against each peer."""
    if result.unit != WF_PER_S or result.system == "floor":
        return {}
    sqlite = result.scenario.startswith("sqlite_")
    drain = "drain_" in result.scenario
    floor_name = ("sqlite_" if sqlite else "") + ("drain_throughput" if drain else "throughput")
    against = {"floor": ratio(result.median, median_of(results, "floor", floor_name))}
    if result.system == OURS and result.config.get("processes") == 1:
        peer_scenario = f"throughput_c{result.config.get('concurrency', 0):g}"
        against |= {p: ratio(result.median, median_of(results, p, peer_scenario)) for p in PEERS}
    return {name: r for name, r in against.items() if r is not None}


def _notes(result: Result, results: Sequence[Result], own: Sequence[Target]) -> list[str]:
    """The ratio / target cell: ratios shown once, then what each target needs."""
    against = _comparisons(result, results)
    needs = []
    notes = [", ".join(f"{fmt(r)}x {name}" for name, r in against.items())]
    for target in own:
        if (target.unit == "x" and target.need.rsplit(" ", 1)[-1] in against) or not target.detail:
            needs.append(target.need)
        else:
            notes.append(target.detail)
    if needs:
        notes.append("needs " + ", ".join(needs))
    return [note for note in notes if note]


def verdict_of(found: Sequence[Target]) -> str:
    """One row's verdict over its targets: ``FAIL`` if any failed, else how many passed."""
    if not found:
        return ""
    verdicts = [t.verdict for t in found]
    if "FAIL" in verdicts:
        return "FAIL"
    passed = verdicts.count("PASS")
    if passed in {0, len(verdicts)}:
        return verdicts[0]
    return f"PASS ({passed} of {len(verdicts)} measured)"


def rows(
    results: Sequence[Result], found: Sequence[Target], errors: Sequence[Mapping[str, Any]]
) -> list[list[str]]:
    """Table rows: scenario, system, median, min, max, unit, ratios/target, verdict.

    ``drain_*`` figures are left out (they are in the JSON), and so are the relay scenario
    (:func:`relay_rows`) and the mixed scenario (:mod:`benchmarks.report_mixed`); a
    scenario that never produced a figure gets a row saying ``error: ...``.
    """
    table = []
    for result in results:
        if "drain_" in result.scenario or has_own_table(result.scenario):
            continue
        own = [t for t in found if t.row == _key(result)]
        notes = _notes(result, results, own)
        failed = sum(1 for e in errors if (e["system"], e["scenario"]) == _key(result))
        if failed:
            notes.append(f"{failed} rep(s) failed")
        table.append(
            [
                result.scenario,
                result.system,
                fmt(result.median),
                fmt(result.min),
                fmt(result.max),
                result.unit,
                "; ".join(notes),
                verdict_of(own),
            ]
        )
    measured = {_key(r) for r in results}
    seen: set[tuple[str, str]] = set()
    for error in errors:
        key = (error["system"], error["scenario"])
        if key in measured or key in seen or has_own_table(key[1]):
            continue
        seen.add(key)
        table.append([key[1], key[0], "-", "-", "-", "", f"error: {error['error']}", ""])
    return table


def has_own_table(scenario: str) -> bool:
    """Whether the scenario's rows are in a table of their own (relay, mixed), not the main one."""
    return scenario.startswith((RELAY_PREFIX, *(f"{kind}_" for kind in MIXED_KINDS)))


def _key(result: Result) -> tuple[str, str]:
    return (result.system, result.scenario)


HEADERS: Final = ("scenario", "system", "median", "min", "max", "unit", "ratio / target", "")


def text_table(
    results: Sequence[Result],
    found: Sequence[Target],
    errors: Sequence[Mapping[str, Any]],
    machine: Mapping[str, Any],
) -> str:
    """The table printed at the end of a run, with the targets and errors under it."""
    from benchmarks import report_mixed  # noqa: PLC0415 - it builds on this module

    body = rows(results, found, errors)
    relay = relay_rows(results, found, errors)
    mixed = report_mixed.mixed_rows(results, found, errors)
    lines = [machine_summary(machine)]
    if body or not (relay or mixed):  # a run of scenarios with their own tables alone
        lines += ["", *_aligned([list(HEADERS), *body], right={2, 3, 4})]
    if relay:
        lines += ["", relay_caption(results)]
        lines += _aligned([list(RELAY_HEADERS), *relay], right={1, 2, 3, 4, 5, 6})
    if mixed:
        lines += ["", report_mixed.caption(results) + ":"]
        lines += _aligned([list(report_mixed.HEADERS), *mixed], right={2, 3, 4, 5, 6})
    lines += ["", "Targets (medians):"]
    lines += _aligned(
        [[t.verdict, t.scenario, t.text, t.detail or "not measured"] for t in found], right=set()
    )
    if errors:
        lines += ["", f"Errors ({len(errors)}):"]
        lines += [f"  {e['label']} rep {e['rep']}: error: {e['error']}" for e in errors]
    return "\n".join(lines) + "\n"


def _aligned(table: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return [
        "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in table
    ]


def markdown_row(cells: Sequence[str]) -> str:
    """One Markdown table row, pipes in cells escaped."""
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def markdown_table(
    results: Sequence[Result],
    found: Sequence[Target],
    errors: Sequence[Mapping[str, Any]],
    machine: Mapping[str, Any],
) -> str:
    """The Markdown put between the markers of ``docs/performance.md``."""

    header = ["scenario", "system", "median", "min", "max", "unit", "ratio vs floor / target"]
    out = [
        markdown_row([*header, "PASS/FAIL"]),
        "| --- | --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    out += [markdown_row([f"`{r[0]}`", *r[1:]]) for r in rows(results, found, errors)]
    out += ["", "| target | measured | PASS/FAIL |", "| --- | --- | --- |"]
    out += [markdown_row([t.text, t.detail or "not measured", t.verdict]) for t in found]
    out += ["", f"Measured on {machine_summary(machine)}."]
    return "\n".join(out)


RELAY_HEADERS: Final = (
    "backend",
    "wf/s",
    "min",
    "max",
    "published msg/s",
    "max backlog",
    "final backlog",
    "bounded",
    "",
)


def relay_rows(
    results: Sequence[Result], found: Sequence[Target], errors: Sequence[Mapping[str, Any]]
) -> list[list[str]]:
    """The relay table: one row per backend measured (or failed), in backend order.

    Columns: the drain's wf/s (median, min, max), published messages per second
    (median), the largest backlog after warm-up and at the end over all repetitions
    (rows), the verdict of the backend's ``relay_…`` target, and a note (errors, or
    ``no relay`` for the jobs table).
    """
    table = []
    verdicts = {t.row[1]: t.verdict for t in found if t.scenario == "relay"}
    for backend in RELAY_BACKENDS:
        prefix = f"{RELAY_PREFIX}{backend}_"
        throughput = find(results, OURS, prefix + "throughput")
        failed = [e for e in errors if e["scenario"].startswith(prefix)]
        if throughput is None and not failed:
            continue
        notes = ["no relay: workers read the jobs table"] if backend == "jobs_table" else []
        if failed and throughput is not None:
            notes.append(f"{len(failed)} rep(s) failed")
        elif failed:
            notes.append(f"error: {failed[0]['error']}")

        def worst(name: str, prefix: str = prefix) -> str:
            result = find(results, OURS, prefix + name)
            return f"{result.max:.0f}" if result is not None else "-"

        published = median_of(results, OURS, prefix + "published")
        table.append(
            [
                backend,
                fmt(throughput.median) if throughput else "-",
                fmt(throughput.min) if throughput else "-",
                fmt(throughput.max) if throughput else "-",
                fmt(published),
                worst("backlog_max"),
                worst("backlog_final"),
                verdicts.get(prefix + "bounded", "") if backend != "jobs_table" else "",
                "; ".join(notes),
            ]
        )
    return table


def relay_caption(results: Sequence[Result]) -> str:
    """One line over the relay table: what was drained, by whom, and in which units."""
    first = next((r for r in results if r.scenario.startswith(RELAY_PREFIX)), None)
    if first is None:
        return "Relay:"
    config = first.config
    batch = next((r.config["batch_size"] for r in results if "batch_size" in r.config), None)
    drained_by = f"P={config.get('processes', 1):g} C={config.get('concurrency', 1):g}"
    parts = [
        f"Relay: {first.n} bench3 runs started up front, then drained by {drained_by}",
        "wf/s of the drain (median, min, max)",
        "backlog in outbox rows (largest over the repetitions, after warm-up)",
    ]
    if batch is not None:
        parts.append(f"relay batch {batch:g}")
    return "; ".join(parts) + ":"


def markdown_relay_table(
    results: Sequence[Result],
    found: Sequence[Target],
    errors: Sequence[Mapping[str, Any]],
    machine: Mapping[str, Any],
) -> str:
    """The Markdown put between the relay markers of ``docs/performance.md``."""

    header = [
        "backend",
        "wf/s (drain)",
        "min",
        "max",
        "published msg/s",
        "max backlog after warm-up",
        "final backlog",
        "bounded",
        "note",
    ]
    out = [markdown_row(header), "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    out += [markdown_row(row) for row in relay_rows(results, found, errors)]
    out += ["", relay_caption(results).rstrip(":") + ".", ""]
    out += [f"Measured on {machine_summary(machine)}."]
    return "\n".join(out)


def machine_summary(machine: Mapping[str, Any]) -> str:
    """One line: CPU, RAM, PostgreSQL, Python, commit, date, mode."""
    parts = [
        f"{machine.get('cpu_count', '?')} x {machine.get('cpu_model', 'unknown CPU')}",
        f"{machine.get('ram_gb', '?')} GB RAM",
        f"PostgreSQL {machine.get('postgresql', '?')}",
        f"Python {machine.get('python', '?')}",
        f"durable-sa {machine.get('commit', '?')}",
        str(machine.get("date", "?")),
    ]
    if "repetitions" in machine:
        parts.append(f"{machine.get('mode', '')} run, median of {machine['repetitions']}".strip())
    return ", ".join(parts)


# --------------------------------------------------------------------------- JSON


def to_json(
    machine: Mapping[str, Any],
    results: Sequence[Result],
    found: Sequence[Target],
    errors: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The contents of ``latest.json``: exactly machine, results, ratios, targets, errors."""
    return {
        "machine": dict(machine),
        "results": [
            {
                "system": r.system,
                "scenario": r.scenario,
                "value": r.median,
                "unit": r.unit,
                "n": r.n,
                "min": r.min,
                "max": r.max,
                "reps": len(r.samples),
                "samples": list(r.samples),
                **r.config,
                **({"series": [[list(p) for p in s] for s in r.series]} if r.series else {}),
            }
            for r in results
        ],
        "ratios": ratios(results),
        "targets": [
            {
                "id": t.id,
                "scenario": t.scenario,
                "text": t.text,
                "system": t.row[0],
                "row": t.row[1],
                "measured": t.measured,
                "op": t.op,
                "required": t.required,
                "unit": t.unit,
                "passed": t.passed,
                "verdict": t.verdict,
                "need": t.need,
                "detail": t.detail,
            }
            for t in found
        ],
        "errors": [dict(e) for e in errors],
    }


# --------------------------------------------------------------------------- docs


def replace_marked(text: str, block: str, start: str = TABLE_START, end: str = TABLE_END) -> str:
    """``text`` with what lies between the markers ``start`` and ``end`` replaced by ``block``.

    Raises:
        ValueError: if the markers are missing, repeated or out of order.
    """
    if text.count(start) != 1 or text.count(end) != 1:
        msg = f"expected one {start} and one {end}"
        raise ValueError(msg)
    head, rest = text.split(start)
    if end not in rest:
        msg = f"{end} comes before {start}"
        raise ValueError(msg)
    tail = rest.split(end)[1]
    return f"{head}{start}\n{block.strip()}\n{end}{tail}"


def update_docs(page: Path, block: str, start: str = TABLE_START, end: str = TABLE_END) -> None:
    """Rewrite the marked part of ``page``; the rest of the page is left as it is."""
    text = replace_marked(page.read_text(encoding="utf-8"), block, start, end)
    page.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- plot


def report(
    samples: Sequence[Sample],
) -> tuple[list[Result], list[Target], list[dict[str, Any]]]:
    """Results, targets and errors of a run's samples."""
    results = aggregate(samples)
    return results, targets(results), errors_of(samples)
