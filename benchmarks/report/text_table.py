"""The text printed at the end of a run: every table of the report, targets and errors.

It puts together what the Markdown of ``docs/performance.md`` shows in three marked
parts: the main table (:mod:`benchmarks.report.tables`), the relay table
(:mod:`benchmarks.report.relay_table`) and the mixed table
(:mod:`benchmarks.report.mixed_table`), each only when the run measured something for
it, then every target's verdict and every failed program run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from benchmarks.report import mixed_table
from benchmarks.report.relay_table import RELAY_HEADERS, relay_caption, relay_rows
from benchmarks.report.tables import HEADERS, aligned, machine_summary, rows

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from benchmarks.report.figures import Result
    from benchmarks.report.targets import Target


def text_table(
    results: Sequence[Result],
    found: Sequence[Target],
    errors: Sequence[Mapping[str, Any]],
    machine: Mapping[str, Any],
) -> str:
    """The table printed at the end of a run, with the targets and errors under it."""
    body = rows(results, found, errors)
    relay = relay_rows(results, found, errors)
    mixed = mixed_table.mixed_rows(results, found, errors)
    lines = [machine_summary(machine)]
    if body or not (relay or mixed):  # a run of scenarios with their own tables alone
        lines += ["", *aligned([list(HEADERS), *body], right={2, 3, 4})]
    if relay:
        lines += ["", relay_caption(results)]
        lines += aligned([list(RELAY_HEADERS), *relay], right={1, 2, 3, 4, 5, 6})
    if mixed:
        lines += ["", mixed_table.caption(results) + ":"]
        lines += aligned([list(mixed_table.HEADERS), *mixed], right={2, 3, 4, 5, 6})
    lines += ["", "Targets (medians):"]
    lines += aligned(
        [[t.verdict, t.scenario, t.text, t.detail or "not measured"] for t in found], right=set()
    )
    if errors:
        lines += ["", f"Errors ({len(errors)}):"]
        lines += [f"  {e['label']} rep {e['rep']}: error: {e['error']}" for e in errors]
    return "\n".join(lines) + "\n"
