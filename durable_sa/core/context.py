"""The context handed to every handler.

It is a read-only view of the run at the moment the step started: the run's input, the
results of the steps before it, and where it stands (run id, step, attempt). Handlers of
``transactional=True`` steps also get ``ctx.session``, a SQLAlchemy ``Session`` on the
transaction that checkpoints the step (their compensators too, on the transaction that
journals the rollback), and so does an ``on_finish`` hook, which also reads
``ctx.final_status`` and ``ctx.error``.

Typed payloads: ``ctx.input`` is structured as the workflow's ``input_type`` (once, on
first read) and ``ctx.result(name, T)`` structures a result, both through the one
converter; ``ctx.results`` stays the stored JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

from durable_sa.core.codec import structure_as
from durable_sa.errors import StepNotTransactionalError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.orm import Session

    from durable_sa.core.status import RunStatus
T = TypeVar("T")
_UNSET: Any = object()


class PayloadTypes(Protocol):
    """The payload types a definition declares (a :class:`DurableWorkflow` is one)."""

    @property
    def input_type(self) -> Any:  # noqa: ANN401 - a class or a generic alias
        """What ``ctx.input`` is structured as (``None``: the stored dict)."""

    def result_type_of(self, key: str) -> Any:  # noqa: ANN401 - a class or a generic alias
        """What ``ctx.result(key)`` is structured as (``None``: the stored JSON)."""


class _Untyped:
    input_type: Any = None

    def result_type_of(self, key: str) -> Any:  # noqa: ANN401 - always None
        del key


_UNTYPED = _Untyped()


class DurableContext:
    """What a handler knows about its run."""

    __slots__ = (
        "_input",
        "_input_json",
        "_resume",
        "_session",
        "_types",
        "attempt",
        "error",
        "final_status",
        "results",
        "run_id",
        "step_name",
        "workflow_name",
    )

    def __init__(  # noqa: PLR0913 - a plain record of the run's position
        self,
        *,
        run_id: int,
        workflow_name: str,
        step_name: str,
        attempt: int,
        input: Mapping[str, Any],  # noqa: A002 - the public name, as in the reference
        results: Mapping[str, Any],
        resume_data: Any = None,  # noqa: ANN401 - a resume's payload, any JSON value
        session: Session | None = None,
        final_status: RunStatus | None = None,
        error: str | None = None,
        types: PayloadTypes | None = None,
    ) -> None:
        """Build a context; the engine does this, handlers only read it.

        ``types`` is the run's definition, for ``ctx.input`` and ``ctx.result``.
        """
        self.run_id = run_id
        self.workflow_name = workflow_name
        self.step_name = step_name
        self.attempt = attempt
        self._input_json: dict[str, Any] = dict(input)
        self._input: Any = _UNSET
        self.results: dict[str, Any] = dict(results)
        self._resume = resume_data
        self._session = session
        self.final_status = final_status
        """In an ``on_finish`` hook: the status the run ends with (``None`` elsewhere)."""
        self.error = error
        """In an ``on_finish`` hook: the run's error (``None`` when it completed)."""
        self._types: PayloadTypes = _UNTYPED if types is None else types

    def __repr__(self) -> str:
        return (
            f"<DurableContext run={self.run_id} workflow={self.workflow_name!r} "
            f"step={self.step_name!r} attempt={self.attempt}>"
        )

    @property
    def input(self) -> Any:  # noqa: ANN401 - a dict, or the workflow's input_type
        """The run's input: a dict, or a value of the workflow's ``input_type``.

        Raises:
            PayloadError: the stored input cannot be read as ``input_type``.

        """
        if self._input is _UNSET:
            wanted = self._types.input_type
            self._input = (
                self._input_json
                if wanted is None
                else structure_as(
                    self._input_json,
                    wanted,
                    what=f"the input of workflow {self.workflow_name!r}",
                )
            )
        return self._input

    @overload
    def result(self, name: str) -> Any: ...  # noqa: ANN401 - JSON or the declared type

    @overload
    def result(self, name: str, result_type: type[T]) -> T: ...

    def result(self, name: str, result_type: Any = None) -> Any:
        """The result stored under ``name``, read as ``result_type``.

        Without ``result_type``, the ``result_type=`` declared on that step (or parallel
        entry) is used; with neither, the stored JSON. ``None`` if there is no result.

        Raises:
            PayloadError: the stored result cannot be read as that type.

        """
        value = self.results.get(name)
        if result_type is None:
            result_type = self._types.result_type_of(name)
        if result_type is None or value is None:
            return value
        return structure_as(value, result_type, what=f"the result {name!r}")

    def signal(self, name: str) -> Any:  # noqa: ANN401 - results are arbitrary JSON
        """The result of the completed step or signal called ``name`` (``None`` if absent)."""
        return self.results.get(name)

    def resume_data(self) -> Any:  # noqa: ANN401 - the payload is arbitrary JSON
        """The payload of the last ``resume`` of this run (``None`` if never resumed)."""
        return self._resume

    @property
    def session(self) -> Session:
        """The ``Session`` of the checkpoint's transaction, in ``transactional=True`` steps.

        Write to your own tables through it and do not commit: the engine commits your
        writes together with the step's checkpoint, or rolls both back.

        Raises:
            StepNotTransactionalError: the step was not declared ``transactional=True``.

        """
        if self._session is None:
            msg = (
                f"ctx.session is only available in transactional steps; declare step "
                f"{self.step_name!r} with transactional=True to write in the checkpoint's "
                f"transaction"
            )
            raise StepNotTransactionalError(msg)
        return self._session

    @property
    def has_session(self) -> bool:
        """True inside a ``transactional=True`` step."""
        return self._session is not None
