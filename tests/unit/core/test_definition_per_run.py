"""Declaring per-run durations and signal defaults: what the definition holds and refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from durable_sa.core.definition import durable
from durable_sa.core.steps import NO_DEFAULT, SignalStep, SleepStep
from durable_sa.errors import DefinitionError


def test_a_callable_duration_is_kept_to_be_called_when_the_step_is_reached() -> None:
    def how_long(ctx: object) -> float:
        return 5.0

    flow = (
        durable("per-run-def")
        .sleep("nap", how_long)
        .wait_for_signal("gate", "go", timeout=how_long)
    )
    nap, gate = flow.steps
    assert isinstance(nap, SleepStep)
    assert (nap.compute, nap.delay, nap.until, nap.duration) == (how_long, None, None, how_long)
    assert isinstance(gate, SignalStep)
    assert (gate.compute_timeout, gate.timeout, gate.has_default) == (how_long, None, False)


def test_fixed_durations_and_defaults_are_kept_as_before() -> None:
    until = datetime(2031, 1, 1, tzinfo=UTC)
    flow = (
        durable("fixed-def")
        .sleep("a", 3)
        .sleep("b", until)
        .wait_for_signal("c", "go", timeout=timedelta(minutes=1), default={"n": (1, 2)})
        .wait_for_signal("d", "go", timeout=60, default=None)
        .wait_for_signal("e", "go")
    )
    a, b, c, d, e = flow.steps
    assert isinstance(a, SleepStep)
    assert (a.delay, a.compute) == (timedelta(seconds=3), None)
    assert isinstance(b, SleepStep)
    assert b.duration == until
    assert isinstance(c, SignalStep)
    assert c.default == {"n": [1, 2]}  # normalised to JSON when declared
    assert isinstance(d, SignalStep)
    assert (d.default, d.has_default) == (None, True)
    assert isinstance(e, SignalStep)
    assert (e.default, e.has_default) == (NO_DEFAULT, False)


@pytest.mark.parametrize("default", [object(), {1: "x"}, float("nan"), {"s": {1, 2}}])
def test_a_default_that_is_not_json_is_refused_when_declared(default: object) -> None:
    with pytest.raises(DefinitionError, match="wait_for_signal 'gate': default"):
        durable("bad-default-def").wait_for_signal("gate", "go", timeout=5, default=default)


def test_fingerprints_ignore_which_callable_decides_a_duration() -> None:
    one = durable("fp-one").sleep("nap", lambda ctx: 1)
    two = durable("fp-two").sleep("nap", lambda ctx: 2)
    three = durable("fp-three").sleep("nap", 5)
    assert one.fingerprint == two.fingerprint == three.fingerprint
