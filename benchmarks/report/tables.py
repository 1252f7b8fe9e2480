"""The main results table, and what every table of the report is laid out with.

:func:`rows` makes the main table's rows: one per result (but the drain figures, and
the relay and mixed scenarios, whose tables are :mod:`benchmarks.report.relay_table` and
:mod:`benchmarks.report.mixed_table`), with its ratios, what its targets need and its
verdict, and one per scenario that only failed. :func:`markdown_table` puts them, with
the targets, between the main markers of ``docs/performance.md``;
:mod:`benchmarks.report.text_table` prints them. :func:`markdown_row`, :func:`aligned`
and :func:`machine_summary` are shared by every table (and the plots' titles).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from benchmarks.report.figures import WF_PER_S, fmt, median_of
from benchmarks.report.samples import MIXED_KINDS, OURS, PEERS, RELAY_PREFIX
from benchmarks.report.targets import ratio, verdict_of

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from benchmarks.report.figures import Result
    from benchmarks.report.targets import Target


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


def rows(
    results: Sequence[Result], found: Sequence[Target], errors: Sequence[Mapping[str, Any]]
) -> list[list[str]]:
    """Table rows: scenario, system, median, min, max, unit, ratios/target, verdict.

    ``drain_*`` figures are left out (they are in the JSON), and so are the relay scenario
    (:mod:`benchmarks.report.relay_table`) and the mixed scenario
    (:mod:`benchmarks.report.mixed_table`); a scenario that never produced a figure gets
    a row saying ``error: ...``.
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


def aligned(table: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    """Text rows, columns padded to their widest cell; the columns in ``right`` right-aligned."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return [
        "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in table
    ]


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
