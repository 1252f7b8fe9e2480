"""The JSON document a run writes (``benchmarks/results/latest.json`` and its siblings).

It has exactly the keys ``machine``, ``results``, ``ratios``, ``targets`` and ``errors``:
every result with its repetitions' samples and configuration (and the relay's backlog
series), every target with its verdict. It is the record a run leaves, beside the page
and plots it rewrites; :func:`from_json` reads it back, so that the page and plots can be
made again from it (``python -m benchmarks.run --render-only``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from benchmarks.report.figures import Result
from benchmarks.report.targets import ratios, targets

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from benchmarks.report.targets import Target

_RESULT_KEYS: Final = {"system", "scenario", "value", "unit", "n", "min", "max", "reps", "samples"}
"""The keys of a result's entry that are not its configuration (nor its ``series``)."""


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


def from_json(
    document: Mapping[str, Any],
) -> tuple[list[Result], list[Target], list[dict[str, Any]]]:
    """Results, targets and errors of a document :func:`to_json` made.

    The results are read back whole (every repetition's sample, the configuration, the
    series); the targets are judged again on them, by the rules of today's code.
    """
    results = [
        Result(
            system=entry["system"],
            scenario=entry["scenario"],
            unit=entry["unit"],
            n=entry["n"],
            samples=tuple(entry["samples"]),
            config={k: v for k, v in entry.items() if k not in _RESULT_KEYS | {"series"}},
            series=tuple(tuple(tuple(p) for p in s) for s in entry.get("series", ())),
        )
        for entry in document["results"]
    ]
    return results, targets(results), [dict(e) for e in document["errors"]]
