from __future__ import annotations

import itertools

import pytest

from durable_sa.core.status import (
    RUN_TRANSITIONS,
    TERMINAL_STATUSES,
    RunEvent,
    RunStatus,
    can_take,
    is_legal_move,
    next_status,
)
from durable_sa.errors import DurableError, IllegalTransition

S = RunStatus
ALL_PAIRS = list(itertools.product(RunStatus, RunEvent))
ILLEGAL_PAIRS = [pair for pair in ALL_PAIRS if pair not in RUN_TRANSITIONS]
NON_TERMINAL = [status for status in RunStatus if status not in TERMINAL_STATUSES]

# The moves SPEC §1 names, and nothing else.
SPEC_MOVES = {
    (S.PENDING, S.RUNNING),
    (S.RUNNING, S.SUSPENDED),
    (S.SUSPENDED, S.RUNNING),
    (S.RUNNING, S.COMPLETED),
    (S.RUNNING, S.COMPENSATING),
    (S.SUSPENDED, S.COMPENSATING),
    (S.RUNNING, S.FAILED),
    (S.SUSPENDED, S.FAILED),
    (S.COMPENSATING, S.FAILED),
    *((status, S.CANCELED) for status in (S.PENDING, S.RUNNING, S.SUSPENDED, S.COMPENSATING)),
}


def _pair_id(pair: object) -> str:
    return str(pair)


@pytest.mark.parametrize(
    ("status", "event"), list(RUN_TRANSITIONS), ids=[f"{s}-{e}" for s, e in RUN_TRANSITIONS]
)
def test_every_table_entry_is_taken_by_next_status(status: RunStatus, event: RunEvent) -> None:
    expected = RUN_TRANSITIONS[status, event]
    assert next_status(status, event) is expected
    assert next_status(status.value, event) is expected  # a stored string works too
    assert can_take(status, event)
    assert can_take(status.value, event)
    assert is_legal_move(status, expected)


@pytest.mark.parametrize(
    ("status", "event"), ILLEGAL_PAIRS, ids=[f"{s}-{e}" for s, e in ILLEGAL_PAIRS]
)
def test_every_pair_outside_the_table_raises(status: RunStatus, event: RunEvent) -> None:
    with pytest.raises(IllegalTransition) as excinfo:
        next_status(status, event)
    message = str(excinfo.value)
    assert status.value in message
    assert event.value in message
    assert not can_take(status, event)
    assert not can_take(status.value, event)


def test_the_table_and_its_complement_cover_every_pair() -> None:
    assert len(RUN_TRANSITIONS) == 15
    assert len(ILLEGAL_PAIRS) == len(RunStatus) * len(RunEvent) - 15
    assert all(isinstance(s, RunStatus) and isinstance(e, RunEvent) for s, e in RUN_TRANSITIONS)
    assert all(isinstance(dst, RunStatus) for dst in RUN_TRANSITIONS.values())


def test_illegal_transition_is_a_durable_error() -> None:
    assert issubclass(IllegalTransition, DurableError)
    with pytest.raises(DurableError):
        next_status(S.COMPLETED, RunEvent.BEGIN)


def test_terminal_statuses_are_completed_failed_canceled() -> None:
    assert {S.COMPLETED, S.FAILED, S.CANCELED} == TERMINAL_STATUSES
    assert {s for s in RunStatus if s.is_terminal} == TERMINAL_STATUSES


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_terminal_statuses_have_no_outgoing_moves(status: RunStatus) -> None:
    assert not any(src is status for src, _event in RUN_TRANSITIONS)
    for event in RunEvent:
        assert not can_take(status, event)
        with pytest.raises(IllegalTransition):
            next_status(status, event)
    for other in RunStatus:
        assert not is_legal_move(status, other)


@pytest.mark.parametrize("status", NON_TERMINAL)
def test_every_non_terminal_status_can_be_canceled(status: RunStatus) -> None:
    assert next_status(status, RunEvent.CANCEL) is S.CANCELED
    assert not status.is_terminal


@pytest.mark.parametrize("status", list(RunStatus))
def test_run_status_members_equal_their_lower_case_names(status: RunStatus) -> None:
    assert status == status.name.lower()
    assert status.value == status.name.lower()
    assert str(status) == status.name.lower()
    assert RunStatus(status.name.lower()) is status
    assert {status.name.lower(): 1}[status] == 1  # hashes like the string


def test_run_status_values() -> None:
    assert [s.value for s in RunStatus] == [
        "pending",
        "running",
        "suspended",
        "compensating",
        "completed",
        "failed",
        "canceled",
    ]
    assert S.RUNNING != "Running"


@pytest.mark.parametrize(("before", "after"), sorted(SPEC_MOVES), ids=_pair_id)
def test_every_move_named_in_the_spec_is_legal(before: RunStatus, after: RunStatus) -> None:
    assert is_legal_move(before, after)
    assert is_legal_move(before.value, after.value)


@pytest.mark.parametrize(
    ("before", "after"),
    [(a, b) for a in RunStatus for b in RunStatus if a is not b],
    ids=_pair_id,
)
def test_no_status_change_beyond_the_spec_is_legal(before: RunStatus, after: RunStatus) -> None:
    assert is_legal_move(before, after) == ((before, after) in SPEC_MOVES)


def test_only_running_and_compensating_may_stay_put() -> None:
    # progress keeps a run running; one recorded compensation keeps it compensating
    assert {s for s in RunStatus if is_legal_move(s, s)} == {S.RUNNING, S.COMPENSATING}
    assert next_status(S.RUNNING, RunEvent.PROGRESS) is S.RUNNING
    assert next_status(S.COMPENSATING, RunEvent.UNDO) is S.COMPENSATING


def test_status_changing_moves_of_the_table_are_exactly_the_spec_moves() -> None:
    moves = {(src, dst) for (src, _event), dst in RUN_TRANSITIONS.items() if src is not dst}
    assert moves == SPEC_MOVES


@pytest.mark.parametrize(
    ("event", "target"),
    [
        (RunEvent.CANCEL, S.CANCELED),
        (RunEvent.FAIL, S.FAILED),
        (RunEvent.ROLLBACK, S.COMPENSATING),
        (RunEvent.COMPLETE, S.COMPLETED),
        (RunEvent.SUSPEND, S.SUSPENDED),
        (RunEvent.WAKE, S.RUNNING),
        (RunEvent.BEGIN, S.RUNNING),
    ],
)
def test_each_event_always_leads_to_the_same_status(event: RunEvent, target: RunStatus) -> None:
    targets = {dst for (_src, ev), dst in RUN_TRANSITIONS.items() if ev is event}
    assert targets == {target}
