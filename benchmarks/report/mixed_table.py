"""The mixed scenario's table: one row per workflow and system, in text and in Markdown.

The scenario (``--only mixed``) runs three programs: durable-sa draining ``mixed6`` and
``plain6`` (:func:`benchmarks.durable_bench.mixed`, one worker, P=1 C=1) and DBOS draining
its own ``mixed6`` (:mod:`benchmarks.peers.dbos_mixed_peer`, C=1). Their figures and
targets are made like any other (:mod:`benchmarks.report.figures`, scenarios ``mixed6_…``
and ``plain6_…``; :mod:`benchmarks.report.targets`, ``mixed_vs_plain`` and
``mixed_vs_dbos``); this module lays them out in a table of their own, between the mixed
markers of ``docs/performance.md`` (:data:`benchmarks.report.docs_page.MIXED_START`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from benchmarks.report.figures import find, fmt, median_of
from benchmarks.report.samples import OURS
from benchmarks.report.tables import machine_summary, markdown_row
from benchmarks.report.targets import ratio, verdict_of

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from benchmarks.report.figures import Result
    from benchmarks.report.targets import Target

ROWS: Final = (("plain6", OURS), ("mixed6", OURS), ("mixed6", "dbos"))
"""The table's rows, in order: (workflow, system)."""

HEADERS: Final = (
    "workflow",
    "system",
    "wf/s",
    "min",
    "max",
    "drain wf/s",
    "CPU ms/wf",
    "ratio / target",
    "",
)


def _notes(workflow: str, system: str, results: Sequence[Result], own: Sequence[Target]) -> str:
    """durable-sa's mixed6 against its plain6 and against DBOS, then what its targets need."""
    if (workflow, system) != ("mixed6", OURS):
        return ""
    mixed = median_of(results, OURS, "mixed6_throughput")
    against = {
        "plain6": ratio(mixed, median_of(results, OURS, "plain6_throughput")),
        "dbos": ratio(mixed, median_of(results, "dbos", "mixed6_throughput")),
    }
    notes = [", ".join(f"{fmt(r)}x {name}" for name, r in against.items() if r is not None)]
    if own:
        notes.append("needs " + ", ".join(t.need for t in own))
    return "; ".join(note for note in notes if note)


def mixed_rows(
    results: Sequence[Result], found: Sequence[Target], errors: Sequence[Mapping[str, Any]]
) -> list[list[str]]:
    """One row per workflow and system measured (or failed), in :data:`ROWS` order.

    Columns: end-to-end wf/s (median, min, max), the drain's wf/s and the worker's CPU
    per workflow (medians), the ratios and what the targets need, the verdict.
    """
    table = []
    for workflow, system in ROWS:
        name = f"{workflow}_throughput"
        result = find(results, system, name)
        failed = [e for e in errors if (e["system"], e["scenario"]) == (system, name)]
        if result is None and not failed:
            continue
        own = [t for t in found if t.row == (system, name)]
        notes = [_notes(workflow, system, results, own)] if result is not None else []
        if failed and result is not None:
            notes.append(f"{len(failed)} rep(s) failed")
        elif failed:
            notes.append(f"error: {failed[0]['error']}")
        table.append(
            [
                workflow,
                system,
                fmt(result.median) if result else "-",
                fmt(result.min) if result else "-",
                fmt(result.max) if result else "-",
                fmt(median_of(results, system, f"{workflow}_drain_throughput")),
                fmt(median_of(results, system, f"{workflow}_cpu_per_wf")),
                "; ".join(note for note in notes if note),
                verdict_of(own) if result is not None else "",
            ]
        )
    return table


def caption(results: Sequence[Result]) -> str:
    """One line under the table: how many runs, drained by what, in which units."""

    def runs(workflow: str, system: str) -> str:
        found = find(results, system, f"{workflow}_throughput")
        return f"{found.n}" if found is not None else "N"

    return (
        f"Mixed: {runs('mixed6', OURS)} runs of mixed6 and of plain6 started up front, then "
        "drained by one durable-sa worker (P=1 C=1, the defaults of `durable-sa worker`); "
        f"DBOS: {runs('mixed6', 'dbos')} runs of its mixed6 through a DBOS queue (C=1); "
        "wf/s end to end (start + drain), the drain alone, and worker CPU per workflow"
    )


def markdown_table(
    results: Sequence[Result],
    found: Sequence[Target],
    errors: Sequence[Mapping[str, Any]],
    machine: Mapping[str, Any],
) -> str:
    """The Markdown put between the mixed markers of ``docs/performance.md``."""
    header = [*HEADERS[:-2], "ratio / target", "PASS/FAIL"]
    out = [markdown_row(header), "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    out += [markdown_row(row) for row in mixed_rows(results, found, errors)]
    own = [t for t in found if t.scenario == "mixed"]
    out += ["", "| target | measured | PASS/FAIL |", "| --- | --- | --- |"]
    out += [markdown_row([t.text, t.detail or "not measured", t.verdict]) for t in own]
    out += ["", caption(results) + ".", "", f"Measured on {machine_summary(machine)}."]
    return "\n".join(out)
