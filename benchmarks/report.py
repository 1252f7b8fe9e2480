"""From raw measurements to figures: aggregation, ratios, targets, table, JSON, plot, docs.

Rules of this module:

* Pure functions only, apart from :func:`plot` (writes a PNG) and :func:`update_docs`
  (rewrites the marked part of a Markdown page). Nothing here starts a process, reads a
  clock or talks to a database: :mod:`benchmarks.run` does that and hands over
  :class:`Sample` objects, one per program run (successful or not).
* A program's JSON line becomes :class:`Metric` objects (one figure each, named by
  scenario, e.g. ``throughput_p1_c1``); metrics of the same system and scenario across
  repetitions become one :class:`Result` (median, min, max).
* Missing figures are never an error here: a ratio or target that lacks one of its
  inputs is ``None`` ("not measured"), and the table says so.
* The JSON written to ``benchmarks/results/latest.json`` has exactly the keys
  ``machine``, ``results``, ``ratios``, ``targets`` and ``errors`` (see :func:`to_json`).
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

SYSTEMS: Final = ("floor", "durable-sa", "dbos", "procrastinate")
PEERS: Final = ("dbos", "procrastinate")
CONCURRENCIES: Final = (1, 4, 16)

WF_PER_S: Final = "wf/s"
MS: Final = "ms"

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
)


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Sample:
    """One run of one scenario program: its parsed JSON line, or why there is none.

    ``kind`` names the program and how to read its output: ``floor``, ``sqlite_floor``,
    ``throughput``, ``peer``, ``latency``, ``history``, ``memory``, ``fanout``, ``sqlite``.
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


@dataclass(frozen=True)
class Result:
    """The figures of one system and scenario over all repetitions."""

    system: str
    scenario: str
    unit: str
    n: int
    samples: tuple[float, ...]
    config: Mapping[str, float] = field(default_factory=dict)

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
    return "throughput" + config_suffix(processes, concurrency)


def job_label(kind: str, system: str, processes: int | None, concurrency: int | None) -> str:
    """How progress lines name a measurement: ``durable-sa P=2 C=16``, ``floor sqlite``."""
    parts = [system]
    if kind not in {"throughput", "peer", "floor"}:
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
    elif kind in {"sqlite", "sqlite_floor"}:
        figures = _throughput_metrics(out, "sqlite_", "", cpu=kind == "sqlite")
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
        )
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    n = out.get("n", out.get("runs_last", 0))
    return [
        Metric(
            system=sample.system,
            scenario=scenario,
            value=float(value),
            unit=unit,
            n=int(n) if isinstance(n, int | float) else 0,
            config=config,
        )
        for scenario, value, unit in figures
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]


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
_OURS: Final = "durable-sa"


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
        id_, id_.split("_", 1)[0], text, (_OURS, row), measured, op, required, unit, None, wanted
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
    base = median_of(results, _OURS, "claim_p50_p1_c1")
    history = median_of(results, _OURS, "history_claim_p50")
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
    fanout = find(results, _OURS, "fanout_p50")
    entry_ms = float(fanout.config.get("entry_ms", 10)) if fanout is not None else 10.0

    def ours(scenario: str) -> float | None:
        return median_of(results, _OURS, scenario)

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
    ]  # fmt: skip


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
    if result.system == _OURS and result.config.get("processes") == 1:
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


def _verdict(found: Sequence[Target]) -> str:
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

    ``drain_*`` figures are left out (they are in the JSON); a scenario that never
    produced a figure gets a row saying ``error: ...``.
    """
    table = []
    for result in results:
        if "drain_" in result.scenario:
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
                _verdict(own),
            ]
        )
    measured = {_key(r) for r in results}
    seen: set[tuple[str, str]] = set()
    for error in errors:
        key = (error["system"], error["scenario"])
        if key in measured or key in seen:
            continue
        seen.add(key)
        table.append([key[1], key[0], "-", "-", "-", "", f"error: {error['error']}", ""])
    return table


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
    body = rows(results, found, errors)
    lines = [machine_summary(machine), ""]
    lines += _aligned([list(HEADERS), *body], right={2, 3, 4})
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


def markdown_table(
    results: Sequence[Result],
    found: Sequence[Target],
    errors: Sequence[Mapping[str, Any]],
    machine: Mapping[str, Any],
) -> str:
    """The Markdown put between the markers of ``docs/performance.md``."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    header = ["scenario", "system", "median", "min", "max", "unit", "ratio vs floor / target"]
    out = [line([*header, "PASS/FAIL"]), "| --- | --- | ---: | ---: | ---: | --- | --- | --- |"]
    out += [line([f"`{r[0]}`", *r[1:]]) for r in rows(results, found, errors)]
    out += ["", "| target | measured | PASS/FAIL |", "| --- | --- | --- |"]
    out += [line([t.text, t.detail or "not measured", t.verdict]) for t in found]
    out += ["", f"Measured on {machine_summary(machine)}."]
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


def replace_marked(text: str, block: str) -> str:
    """``text`` with what lies between the table markers replaced by ``block``.

    Raises:
        ValueError: if the markers are missing, repeated or out of order.
    """
    if text.count(TABLE_START) != 1 or text.count(TABLE_END) != 1:
        msg = f"expected one {TABLE_START} and one {TABLE_END}"
        raise ValueError(msg)
    head, rest = text.split(TABLE_START)
    if TABLE_END not in rest:
        msg = f"{TABLE_END} comes before {TABLE_START}"
        raise ValueError(msg)
    tail = rest.split(TABLE_END)[1]
    return f"{head}{TABLE_START}\n{block.strip()}\n{TABLE_END}{tail}"


def update_docs(page: Path, block: str) -> None:
    """Rewrite the marked part of ``page``; the rest of the page is left as it is."""
    page.write_text(replace_marked(page.read_text(encoding="utf-8"), block), encoding="utf-8")


# --------------------------------------------------------------------------- plot


def plot_series(results: Sequence[Result]) -> dict[str, list[tuple[int, Result]]]:
    """Lines of the plot: (concurrency, result) per system, one worker process each."""
    series: dict[str, list[tuple[int, Result]]] = {}
    for system, name in (
        ("durable-sa", "throughput_p1_c{}"),
        *((p, "throughput_c{}") for p in PEERS),
    ):
        points = [
            (c, found)
            for c in CONCURRENCIES
            if (found := find(results, system, name.format(c))) is not None
        ]
        if points:
            series[system] = points
    return series


def plot(results: Sequence[Result], machine: Mapping[str, Any], path: Path) -> None:
    """Throughput against worker concurrency, one line per system, the floor as a line."""
    import matplotlib as mpl  # noqa: PLC0415 - only the plot needs it (the bench extra)

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - after choosing the backend

    styles: dict[str, Mapping[str, Any]] = {
        "durable-sa": {"color": "#1f77b4", "marker": "o"},
        "dbos": {"color": "#d62728", "marker": "s"},
        "procrastinate": {"color": "#2ca02c", "marker": "^"},
    }
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for system, points in plot_series(results).items():
        xs = [c for c, _ in points]
        ys = [r.median for _, r in points]
        errs = [[r.median - r.min for _, r in points], [r.max - r.median for _, r in points]]
        label = "durable-sa (1 process)" if system == "durable-sa" else system
        ax.errorbar(xs, ys, yerr=errs, label=label, capsize=3, linewidth=1.8, **styles[system])
    multi = [
        r
        for r in results
        if r.system == "durable-sa"
        and re.fullmatch(r"throughput_p\d+_c\d+", r.scenario)
        and r.config.get("processes", 1) > 1
    ]
    for i, r in enumerate(multi):
        x, y = r.config.get("concurrency", 1), r.median
        ax.plot(
            [x],
            [y],
            marker="D",
            color=styles[_OURS]["color"],
            markerfacecolor="white",
            linestyle="",
            label="durable-sa (several processes)" if i == 0 else None,
        )
        ax.annotate(
            f"P={r.config.get('processes'):g}",
            (x, y),
            textcoords="offset points",
            xytext=(7, -3) if i % 2 == 0 else (-24, -3),
            fontsize=8,
            color=styles[_OURS]["color"],
        )
    if (floor := find(results, "floor", "throughput")) is not None:
        ax.axhline(floor.median, color="black", linestyle="--", linewidth=1)
        ax.annotate(
            f"floor: raw psycopg, 1 connection ({floor.median:.0f} wf/s)",
            (1, floor.median),
            textcoords="offset points",
            xytext=(2, 4),
            fontsize=8,
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(CONCURRENCIES), [str(c) for c in CONCURRENCIES])
    ax.set_xlim(0.8, 24)  # room for the P= labels right of C=16
    ax.set_xlabel("worker concurrency (C)")
    ax.set_ylabel("workflows per second (start + drain)")
    ax.set_ylim(bottom=0)
    ax.grid(visible=True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(_wrap(machine_summary(machine), 95), fontsize=8)
    fig.suptitle("3-step workflows on PostgreSQL: throughput against concurrency", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _wrap(text: str, width: int) -> str:
    lines: list[str] = []
    for word in text.split(", "):
        if lines and len(lines[-1]) + len(word) + 2 <= width:
            lines[-1] += ", " + word
        else:
            lines.append(word)
    return "\n".join(lines)


def report(
    samples: Sequence[Sample],
) -> tuple[list[Result], list[Target], list[dict[str, Any]]]:
    """Results, targets and errors of a run's samples."""
    results = aggregate(samples)
    return results, targets(results), errors_of(samples)
