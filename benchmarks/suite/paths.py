"""Where the suite runs and what it writes: the repository root, the JSON, the page, the plots.

The scenario programs run with the repository root as their working directory
(:mod:`benchmarks.suite.measure`), the commit measured is the root's
(:mod:`benchmarks.suite.machine`), and a run's products go to these paths
(:mod:`benchmarks.suite.publish`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
RESULTS_JSON: Final = ROOT / "benchmarks" / "results" / "latest.json"
PLOT_PNG: Final = ROOT / "docs" / "performance.png"
RELAY_PNG: Final = ROOT / "docs" / "performance-relay.png"
MIXED_PNG: Final = ROOT / "docs" / "performance-mixed.png"
DOCS_PAGE: Final = ROOT / "docs" / "performance.md"
