"""The relay scenario's table: one row per relay backend, in text and in Markdown.

The relay scenario (:mod:`benchmarks.relay_bench`, sample kinds ``relay_<backend>``)
gives results and targets like any other, but its figures (drain wf/s, published
messages, outbox backlog, bounded or not) do not fit the main table's columns: they get
a table of their own, between the relay markers of ``docs/performance.md``, and a plot
(:func:`benchmarks.report.plots.plot_relay`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from benchmarks.report.figures import find, fmt, median_of
from benchmarks.report.samples import OURS, RELAY_BACKENDS, RELAY_PREFIX
from benchmarks.report.tables import machine_summary, markdown_row

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from benchmarks.report.figures import Result
    from benchmarks.report.targets import Target

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
