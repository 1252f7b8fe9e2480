"""The JSON document a run writes (``benchmarks/results/latest.json`` and its siblings).

It has exactly the keys ``machine``, ``results``, ``ratios``, ``targets`` and ``errors``:
every result with its repetitions' samples and configuration (and the relay's backlog
series), every target with its verdict. It is the record a run leaves, beside the page
and plots it rewrites.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from benchmarks.report.targets import ratios

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from benchmarks.report.figures import Result
    from benchmarks.report.targets import Target


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
