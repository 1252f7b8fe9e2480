"""Where a run's figures go: the JSON, the plots, the marked tables of the performance page.

:func:`publish` writes a run's report (:mod:`benchmarks.report`: results, targets,
errors) out: ``benchmarks/results/latest.json`` (or ``latest-only-<groups>.json``), the
plots and the parts of ``docs/performance.md`` the run measured something for
(:mod:`benchmarks.suite.paths`). The report comes from the run's samples, or from the
JSON of an earlier run (``--render-only``). Drawing or writing a part can fail without losing the
figures: the failure is one more error in the JSON and the printed table.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from benchmarks.report import docs_page, mixed_table, plots, relay_table, tables
from benchmarks.report.json_document import to_json
from benchmarks.report.samples import one_line
from benchmarks.report.text_table import text_table
from benchmarks.suite.paths import DOCS_PAGE, MIXED_PNG, PLOT_PNG, RELAY_PNG, ROOT, results_json

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from benchmarks.report.figures import Result
    from benchmarks.report.targets import Target
    from benchmarks.suite.measure import Progress

OWN: Final = "bench"
"""The system of publishing's own errors (a plot not drawn, a table not written)."""


def publish(  # noqa: PLR0913 - what was run, and where its figures go
    results: Sequence[Result],
    found: Sequence[Target],
    errors: Sequence[Mapping[str, Any]],
    machine: Mapping[str, Any],
    *,
    docs: bool,
    progress: Progress,
    main: bool = True,
    relay: bool = True,
    mixed: bool = True,
    only: Sequence[str] | None = None,
) -> str:
    """Write the JSON, the plots and the docs tables; return the tables to print.

    ``main``, ``relay`` and ``mixed`` say which parts of the page (and which plot) this
    run measured: a part it did not measure keeps what an earlier run wrote there. A run of
    some groups only (``only``) writes its JSON beside ``latest.json``, as
    ``latest-only-<groups>.json``, so the last full run's figures stay whole. Errors of
    an earlier publishing (a report read back from its JSON) are left behind: this one
    says whether its own plots and tables fail.
    """
    errors = [dict(e) for e in errors if e["system"] != OWN]
    target = results_json(only)
    target.parent.mkdir(parents=True, exist_ok=True)
    if docs and main:
        try:
            plots.plot(results, machine, PLOT_PNG)
            progress.say(f"drew {PLOT_PNG.relative_to(ROOT)}")
        except Exception as exc:  # noqa: BLE001 - the figures matter more than the picture
            errors.append(_own_error("plot", exc))
        try:
            docs_page.update_docs(DOCS_PAGE, tables.markdown_table(results, found, errors, machine))
            progress.say(f"updated the table in {DOCS_PAGE.relative_to(ROOT)}")
        except Exception as exc:  # noqa: BLE001 - the figures matter more than the page
            errors.append(_own_error("docs", exc))
    if docs and relay:
        try:
            if plots.plot_relay(results, machine, RELAY_PNG):
                progress.say(f"drew {RELAY_PNG.relative_to(ROOT)}")
        except Exception as exc:  # noqa: BLE001 - the figures matter more than the picture
            errors.append(_own_error("relay plot", exc))
        try:
            block = relay_table.markdown_relay_table(results, found, errors, machine)
            docs_page.update_docs(DOCS_PAGE, block, docs_page.RELAY_START, docs_page.RELAY_END)
            progress.say(f"updated the relay table in {DOCS_PAGE.relative_to(ROOT)}")
        except Exception as exc:  # noqa: BLE001 - the figures matter more than the page
            errors.append(_own_error("relay docs", exc))
    if docs and mixed:
        errors += _publish_mixed(results, found, errors, machine, progress)
    document = to_json(machine, results, found, errors)
    target.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    progress.say(f"wrote {target.relative_to(ROOT)}")
    return text_table(results, found, errors, machine)


def _publish_mixed(
    results: Sequence[Result],
    found: Sequence[Target],
    errors: Sequence[Mapping[str, Any]],
    machine: Mapping[str, Any],
    progress: Progress,
) -> list[dict[str, Any]]:
    """The mixed scenario's plot and table; the errors in drawing or writing them."""
    failed = []
    try:
        if plots.plot_mixed(results, machine, MIXED_PNG):
            progress.say(f"drew {MIXED_PNG.relative_to(ROOT)}")
    except Exception as exc:  # noqa: BLE001 - the figures matter more than the picture
        failed.append(_own_error("mixed plot", exc))
    try:
        block = mixed_table.markdown_table(results, found, errors, machine)
        docs_page.update_docs(DOCS_PAGE, block, docs_page.MIXED_START, docs_page.MIXED_END)
        progress.say(f"updated the mixed table in {DOCS_PAGE.relative_to(ROOT)}")
    except Exception as exc:  # noqa: BLE001 - the figures matter more than the page
        failed.append(_own_error("mixed docs", exc))
    return failed


def _own_error(what: str, exc: Exception) -> dict[str, Any]:
    return {
        "system": OWN,
        "scenario": what,
        "label": f"{OWN} {what}",
        "rep": 0,
        "error": f"{type(exc).__name__}: {one_line(str(exc))}",
    }
