"""The benchmark plots: throughput against concurrency, the relay's outbox backlog, mixed.

Kept apart from the figures, targets and tables of the report, since only these
functions need matplotlib (the ``bench`` and ``dev`` extras install it), and they import
it only when called.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from benchmarks.report.figures import find
from benchmarks.report.mixed_table import ROWS as MIXED_ROWS
from benchmarks.report.samples import OURS, PEERS, RELAY_BACKENDS, RELAY_PREFIX
from benchmarks.report.tables import machine_summary

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from benchmarks.report.figures import Result

CONCURRENCIES: Final = (1, 4, 16)
"""The worker concurrencies on the throughput plot's x axis."""


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
            color=styles[OURS]["color"],
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
            color=styles[OURS]["color"],
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


def relay_series(
    results: Sequence[Result],
) -> dict[str, tuple[tuple[tuple[float, float], ...], ...]]:
    """The backlog series of each relay backend that has any: one per repetition."""
    series = {}
    for backend in RELAY_BACKENDS:
        found = find(results, OURS, f"{RELAY_PREFIX}{backend}_backlog_max")
        if found is not None and found.series:
            series[backend] = found.series
    return series


def plot_relay(results: Sequence[Result], machine: Mapping[str, Any], path: Path) -> bool:
    """The outbox backlog over the drain, per relay backend; False (no file) if none."""
    series = relay_series(results)
    if not series:
        return False
    import matplotlib as mpl  # noqa: PLC0415 - only the plot needs it (the bench extra)

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - after choosing the backend

    colors = {"redis": "#d62728", "celery": "#2ca02c"}
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for backend, reps in series.items():
        for i, points in enumerate(reps):
            ax.plot(
                [t for t, _ in points],
                [b for _, b in points],
                color=colors.get(backend, "#1f77b4"),
                linewidth=1.2,
                alpha=0.8,
                label=backend if i == 0 else None,
            )
    batch = next((r.config["batch_size"] for r in results if "batch_size" in r.config), None)
    if batch is not None:
        ax.axhline(batch, color="black", linestyle="--", linewidth=1)
        ax.annotate(
            f"relay batch ({batch:g} rows)",
            (0, batch),
            textcoords="offset points",
            xytext=(2, 4),
            fontsize=8,
        )
    ax.set_yscale("symlog", linthresh=10)
    highest = max((b for reps in series.values() for s in reps for _, b in s), default=0.0)
    ax.set_ylim(0, 3 * max(highest, batch or 0.0, 10.0))
    ax.set_xlim(left=0)
    ax.set_xlabel("seconds into the drain")
    ax.set_ylabel("outbox backlog (rows due, unpublished)")
    ax.grid(visible=True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(_wrap(machine_summary(machine), 95), fontsize=8)
    fig.suptitle("Relay: outbox backlog while draining (one line per repetition)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def mixed_bars(results: Sequence[Result]) -> list[tuple[str, Result]]:
    """The mixed scenario's bars: (label, end-to-end result) per workflow and system measured."""
    return [
        (f"{system} {workflow}", found)
        for workflow, system in MIXED_ROWS
        if (found := find(results, system, f"{workflow}_throughput")) is not None
    ]


def plot_mixed(results: Sequence[Result], machine: Mapping[str, Any], path: Path) -> bool:
    """End-to-end wf/s of plain6 and mixed6 (durable-sa) and mixed6 (DBOS); False if none."""
    bars = mixed_bars(results)
    if not bars:
        return False
    import matplotlib as mpl  # noqa: PLC0415 - only the plot needs it (the bench extra)

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - after choosing the backend

    colors = {OURS: "#1f77b4", "dbos": "#d62728"}
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    ys = list(range(len(bars)))
    ax.barh(
        ys,
        [r.median for _, r in bars],
        xerr=[[r.median - r.min for _, r in bars], [r.max - r.median for _, r in bars]],
        color=[colors.get(r.system, "#7f7f7f") for _, r in bars],
        capsize=3,
        height=0.6,
    )
    for y, (_, r) in zip(ys, bars, strict=True):
        ax.annotate(
            f"{r.median:.3g} wf/s",
            (r.max, y),
            textcoords="offset points",
            xytext=(4, -3),
            fontsize=8,
        )
    plain = find(results, OURS, "plain6_throughput")
    if plain is not None:
        ax.axvline(0.7 * plain.median, color="black", linestyle="--", linewidth=1)
        ax.annotate(
            "target for mixed6: 0.7x plain6",
            (0.7 * plain.median, 0.0),
            xycoords=("data", "axes fraction"),  # at the bottom, right of the line
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    ax.set_xscale("log")
    highest = max(r.max for _, r in bars)
    ax.set_xlim(right=4 * highest)
    ax.set_yticks(ys, [label for label, _ in bars])
    ax.invert_yaxis()
    ax.set_xlabel("workflows per second (start + drain), log scale")
    ax.grid(visible=True, axis="x", alpha=0.3)
    ax.set_title(_wrap(machine_summary(machine), 95), fontsize=8)
    fig.suptitle("Mixed: six steps of every kind against six plain steps, one worker", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
