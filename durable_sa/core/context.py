"""The context handed to every handler.

It is a read-only view of the run at the moment the step started: the run's input, the
results of the steps before it, and where it stands (run id, step, attempt). Handlers of
``transactional=True`` steps also get ``ctx.session``, a SQLAlchemy ``Session`` on the
transaction that checkpoints the step (their compensators too, on the transaction that
journals the rollback), and so does an ``on_finish`` hook, which also reads
``ctx.final_status`` and ``ctx.error``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from durable_sa.errors import StepNotTransactionalError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.orm import Session

    from durable_sa.core.status import RunStatus


class DurableContext:
    """What a handler knows about its run."""

    __slots__ = (
        "_resume",
        "_session",
        "attempt",
        "error",
        "final_status",
        "input",
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
    ) -> None:
        """Build a context; the engine does this, handlers only read it."""
        self.run_id = run_id
        self.workflow_name = workflow_name
        self.step_name = step_name
        self.attempt = attempt
        self.input: dict[str, Any] = dict(input)
        self.results: dict[str, Any] = dict(results)
        self._resume = resume_data
        self._session = session
        self.final_status = final_status
        """In an ``on_finish`` hook: the status the run ends with (``None`` elsewhere)."""
        self.error = error
        """In an ``on_finish`` hook: the run's error (``None`` when it completed)."""

    def __repr__(self) -> str:
        return (
            f"<DurableContext run={self.run_id} workflow={self.workflow_name!r} "
            f"step={self.step_name!r} attempt={self.attempt}>"
        )

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
