"""The core-cost benchmark still runs against the engine's current modules."""

from __future__ import annotations

from benchmarks.core_cost import per_workflow_us


def test_the_core_cost_benchmark_measures_something() -> None:
    assert per_workflow_us(workflows=20) > 0
