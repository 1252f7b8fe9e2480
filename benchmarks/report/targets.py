"""The suite's goals, judged: ratios between results, targets and their verdicts.

Every goal of the suite is a :class:`Target` made by :func:`targets` from the results'
medians: what it requires (``need``), what was measured (``detail``) and whether that
passes. A target whose inputs were not measured is not judged (``passed`` is ``None``,
the verdict ``n/a``); :func:`verdict_of` sums up the targets shown on one table row.
The tables (:mod:`benchmarks.report.tables` and its siblings) only lay these out.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from benchmarks.report.figures import find, fmt, median_of
from benchmarks.report.samples import OURS, RELAY_BACKENDS, RELAY_PREFIX

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from benchmarks.report.figures import Result


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
        judge("controls_cpu", "worker CPU per workflow with a rate limit and a paused workflow "
              "≤ 1.3x without (P=1 C=1)", "controls_on_cpu_per_wf",
              ratio(ours("controls_on_cpu_per_wf"), ours("controls_off_cpu_per_wf")),
              "<= 1.3 x controls_off"),
        judge("controls_idle_cpu", "worker CPU per workflow that uses no control while a "
              "rate limit is set and a workflow paused ≤ 1.3x none (P=1 C=1)",
              "controls_idle_cpu_per_wf",
              ratio(ours("controls_idle_cpu_per_wf"), ours("controls_off_cpu_per_wf")),
              "<= 1.3 x controls_off"),
        judge("controls_limits_cpu", "worker CPU per workflow with max_active and "
              "max_active_per_key set (never reached) ≤ 1.3x without (P=1 C=1)",
              "controls_limits_cpu_per_wf",
              ratio(ours("controls_limits_cpu_per_wf"), ours("controls_off_cpu_per_wf")),
              "<= 1.3 x controls_off"),
        judge("controls_both_cpu", "worker CPU per workflow with the limits and a rate "
              "limit, a workflow paused ≤ 1.3x none (P=1 C=1)", "controls_both_cpu_per_wf",
              ratio(ours("controls_both_cpu_per_wf"), ours("controls_off_cpu_per_wf")),
              "<= 1.3 x controls_off"),
        judge("tracing_cpu", "worker CPU per workflow with OpenTelemetry tracing on (an "
              "in-memory exporter) ≤ 1.3x off (P=1 C=1)", "tracing_on_cpu_per_wf",
              ratio(ours("tracing_on_cpu_per_wf"), ours("tracing_off_cpu_per_wf")),
              "<= 1.3 x tracing_off"),
        judge("fairness_jain", "per-key limits: Jain's index of completions per key while "
              "every key has runs left ≥ 0.9 (one hot key first, four cold; P=1 C=4)",
              "fairness_jain", ours("fairness_jain"), f">= {FAIRNESS_JAIN} index"),
        judge("mixed_vs_dbos", "durable-sa mixed6 ≥ 5x DBOS mixed6 (C=1)", "mixed6_throughput",
              ratio(ours("mixed6_throughput"), median_of(results, "dbos", "mixed6_throughput")),
              ">= 5 x dbos"),
    ]  # fmt: skip


FAIRNESS_JAIN: Final = 0.9
"""The least Jain index of the fairness scenario: 1.0 is perfectly fair, 0.2 one key alone."""

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
