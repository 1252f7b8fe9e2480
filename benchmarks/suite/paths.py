"""Where the suite runs and what it writes: the repository root, the JSON, the page, the plots.

The scenario programs run with the repository root as their working directory
(:mod:`benchmarks.suite.measure`), the commit measured is the root's
(:mod:`benchmarks.suite.machine`), and a run's products go to these paths
(:mod:`benchmarks.suite.publish`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Sequence

ROOT: Final = Path(__file__).resolve().parents[2]
RESULTS_JSON: Final = ROOT / "benchmarks" / "results" / "latest.json"
PLOT_PNG: Final = ROOT / "docs" / "performance.png"
RELAY_PNG: Final = ROOT / "docs" / "performance-relay.png"
MIXED_PNG: Final = ROOT / "docs" / "performance-mixed.png"
DOCS_PAGE: Final = ROOT / "docs" / "performance.md"


def results_json(only: Sequence[str] | None) -> Path:
    """The JSON of a run: ``latest.json``, or beside it ``latest-only-<groups>.json``.

    A run of some groups only (``only``) writes its own file, so the last full run's
    figures stay whole.
    """
    if not only:
        return RESULTS_JSON
    return RESULTS_JSON.with_name(f"latest-only-{'-'.join(sorted(set(only)))}.json")
