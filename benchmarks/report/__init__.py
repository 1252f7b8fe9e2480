"""The benchmark report: from the scenario programs' JSON lines to verdicts, tables and plots.

Rules of this package:

* Pure functions only, apart from :func:`benchmarks.report.docs_page.update_docs`
  (rewrites the marked part of a Markdown page) and the plots (write PNG files). Nothing
  here starts a process, reads a clock or talks to a database: :mod:`benchmarks.suite`
  does that and hands over :class:`~benchmarks.report.samples.Sample` objects, one per
  program run (successful or not); :func:`report` turns them into results, targets and
  errors.
* Missing figures are never an error here: a ratio or target that lacks one of its
  inputs is ``None`` ("not measured"), and the table says so.
* The relay scenario and the mixed scenario give results and targets like any other, but
  each has a table and a plot of its own, between its own markers in the docs.

Its modules, in the order the figures flow through them:

* :mod:`~benchmarks.report.samples`: a program run, its names, the errors of failed runs;
* :mod:`~benchmarks.report.figures`: a sample's figures, aggregated into results;
* :mod:`~benchmarks.report.relay_backlog`: whether one relay drain kept up (used by the
  relay program itself, while it measures);
* :mod:`~benchmarks.report.targets`: ratios, the suite's goals and their verdicts;
* :mod:`~benchmarks.report.tables`, :mod:`~benchmarks.report.relay_table`,
  :mod:`~benchmarks.report.mixed_table`: the tables, in text and in Markdown;
* :mod:`~benchmarks.report.text_table`: all of them as printed at the end of a run;
* :mod:`~benchmarks.report.docs_page`: the marked parts of ``docs/performance.md``;
* :mod:`~benchmarks.report.json_document`: ``benchmarks/results/latest.json``;
* :mod:`~benchmarks.report.plots`: the PNG plots (matplotlib).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from benchmarks.report import figures, samples, targets

if TYPE_CHECKING:
    from collections.abc import Sequence

    from benchmarks.report.figures import Result
    from benchmarks.report.samples import Sample
    from benchmarks.report.targets import Target


def report(
    measured: Sequence[Sample],
) -> tuple[list[Result], list[Target], list[dict[str, Any]]]:
    """Results, targets and errors of a run's samples."""
    results = figures.aggregate(measured)
    return results, targets.targets(results), samples.errors_of(measured)
