"""How a failure is told: its type, its message, a bounded traceback."""

from __future__ import annotations

from durable_sa.errors import ResultNotSerializableError
from durable_sa.execute.failures import (
    TRACEBACK_LIMIT,
    StepFailedError,
    describe,
    failure_info,
    type_name,
)


class CardDeclinedError(Exception):
    """An application's own error."""


def _raised(exc: BaseException) -> BaseException:
    def throw() -> None:
        raise exc

    try:
        throw()
    except BaseException as caught:  # noqa: BLE001 - the test's own raise
        return caught
    raise AssertionError  # pragma: no cover


def test_a_message_names_the_type() -> None:
    assert describe(KeyError("missing")) == "KeyError: 'missing'"
    assert describe(RuntimeError()) == "RuntimeError"
    assert describe(StepFailedError("the result is not JSON")) == "the result is not JSON"


def test_a_builtin_type_is_its_name_and_any_other_its_full_path() -> None:
    assert type_name(KeyError()) == "KeyError"
    assert type_name(CardDeclinedError()) == f"{__name__}.CardDeclinedError"


def test_an_engine_failure_is_typed_by_what_caused_it() -> None:
    def serialize() -> None:
        msg = "not JSON"
        raise ResultNotSerializableError(msg)

    def encode() -> None:
        try:
            serialize()
        except ResultNotSerializableError as cause:
            raise StepFailedError(str(cause)) from cause

    try:
        encode()
    except StepFailedError as exc:
        info = failure_info(exc)
    assert info.message == "not JSON"
    assert info.error_type == "durable_sa.errors.ResultNotSerializableError"


def test_a_traceback_keeps_its_end_within_the_limit() -> None:
    def deep(n: int) -> None:  # distinct lines, so Python cannot fold the frames
        if n == 0:
            msg = "at the bottom"
            raise ValueError(msg)
        [deep, deep][n % 2](n - 1)

    try:
        try:
            deep(50)
        except ValueError as first:
            raise RuntimeError("x" * TRACEBACK_LIMIT) from first
    except RuntimeError as exc:
        info = failure_info(exc)
    assert info.traceback is not None
    assert len(info.traceback) <= TRACEBACK_LIMIT + len("...\n")
    assert info.traceback.startswith("...\n")
    assert info.traceback.rstrip().endswith("x" * 100)  # the end: where it was raised
    short = failure_info(_raised(KeyError("k")))
    assert short.traceback is not None
    assert short.traceback.startswith("Traceback (most recent call last)")
