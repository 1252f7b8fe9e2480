"""Every error durable-sa raises on purpose.

Rules: each class's docstring is its default message; each inherits the builtin it
resembles, so callers that already catch ``LookupError`` or ``ValueError`` keep working;
an error caused by the database chains SQLAlchemy's exception with ``from``.

    DurableError
    ├── DefinitionError (ValueError)          a workflow was defined wrongly
    ├── WorkflowNotRegisteredError (LookupError)
    ├── UnknownWorkflowError (LookupError)    pause() names a workflow nothing knows
    ├── RunNotFoundError (LookupError)
    ├── PayloadError (ValueError)             input, data or a job payload is not valid JSON
    │   └── ResultNotSerializableError        a step returned something JSON cannot hold
    ├── DefinitionChanged                     a run's pinned definition differs from this process's
    ├── BackendNotFound (LookupError)
    ├── StepNotTransactionalError (AttributeError)
    ├── InvalidArgumentError (ValueError)     an argument the engine cannot use (naive time...)
    ├── DeadLetterNotFoundError (LookupError)
    ├── WaitTimeoutError (TimeoutError)       wait() gave up before the run ended
    ├── WrongSessionError (TypeError)         a sync call got an AsyncSession, or the reverse
    └── IllegalTransition                     a status move the table forbids (a bug)
"""

from __future__ import annotations


class DurableError(Exception):
    """Something went wrong in durable-sa."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class DefinitionError(DurableError, ValueError):
    """The workflow definition is invalid; fix it where the workflow is declared."""


class WorkflowNotRegisteredError(DurableError, LookupError):
    """No workflow is registered under this name; import the module that defines it."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        hint = f" Registered: {', '.join(sorted(known))}." if known else ""
        super().__init__(
            f"No durable workflow named {name!r} is registered in this process; "
            f"import the module that calls durable({name!r}) first.{hint}"
        )
        self.name = name


class UnknownWorkflowError(DurableError, LookupError):
    """No workflow of this name is known here or to the database; check the name.

    Raised by ``pause`` for a name this process does not define, no live worker
    defines, no run has and no schedule starts: most likely a typo, which would pause
    nothing and report success. ``known`` lists the names that are known.
    """

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        hint = f" Known: {', '.join(sorted(known))}." if known else ""
        super().__init__(
            f"No workflow named {name!r} is registered in this process, defined by a live "
            f"worker, started before or scheduled; check the name.{hint} To pause a "
            "workflow that only another process defines and that has never run, pass "
            f"force=True (durable-sa pause --force {name})."
        )
        self.name = name
        self.known = sorted(known or [])


class RunNotFoundError(DurableError, LookupError):
    """No run has this id."""

    def __init__(self, run_id: object) -> None:
        super().__init__(f"No durable run with id {run_id!r} exists.")
        self.run_id = run_id


class RunTerminalError(DurableError):
    """The run has ended, or will never wait again, so it can take no more signals.

    Never waits again: its steps are done and only its ``on_finish`` hook is left, or it
    is rolling back its completed steps.
    """

    def __init__(self, run_id: int, status: object) -> None:
        super().__init__(
            f"run {run_id} is {status}: it takes no more signals; start a new run, or "
            "check engine.status(run_id) before sending"
        )
        self.run_id = run_id
        self.status = status


class PayloadError(DurableError, ValueError):
    """A value could not be stored as JSON; pass plain dicts, lists, strings and numbers."""


class PayloadTooLargeError(PayloadError):
    """A value's JSON is over the engine's ``max_payload_bytes``; store a reference instead.

    ``size`` and ``limit`` are in bytes of compact UTF-8 JSON.
    """

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class ResultNotSerializableError(PayloadError):
    """A step returned a result that is not JSON-serializable."""


class DefinitionChanged(DurableError):  # noqa: N818 - the name is fixed by the style guide
    """The run was started with another definition of its workflow than this process has."""


class BackendNotFound(DurableError, LookupError):  # noqa: N818 - fixed name
    """No queue backend is installed under this name."""


class StepNotTransactionalError(DurableError, AttributeError):
    """ctx.session exists only in steps declared with transactional=True."""


class InvalidArgumentError(DurableError, ValueError):
    """An argument has a value the engine cannot use; the message says which and why."""


class DeadLetterNotFoundError(DurableError, LookupError):
    """No dead letter has this id."""

    def __init__(self, dead_letter_id: object) -> None:
        super().__init__(
            f"No dead letter with id {dead_letter_id!r} (or its run no longer exists); "
            "list them with `durable-sa dead-letters`."
        )
        self.dead_letter_id = dead_letter_id


class ScheduleNotFoundError(DurableError, LookupError):
    """No schedule has this name."""

    def __init__(self, name: object) -> None:
        super().__init__(
            f"No schedule named {name!r}; create it with engine.schedule({name!r}, ...) "
            "or list them with `durable-sa schedules`."
        )
        self.name = name


class WaitTimeoutError(DurableError, TimeoutError):
    """The run did not end in time; it goes on, wait again or check its status."""

    def __init__(self, run_id: int, timeout: float, status: str) -> None:
        super().__init__(
            f"run {run_id} is still {status} after waiting {timeout:g} s; it goes on "
            "running: wait again or look at engine.status(run_id)"
        )
        self.run_id = run_id
        self.timeout = timeout
        self.status = status


class WrongSessionError(DurableError, TypeError):
    """A sync call was given an AsyncSession, or an ``_async`` call a sync Session."""


class IllegalTransition(DurableError):  # noqa: N818 - fixed name
    """The engine attempted a run-status change its transition table forbids (a bug)."""


__all__ = [
    "BackendNotFound",
    "DeadLetterNotFoundError",
    "DefinitionChanged",
    "DefinitionError",
    "DurableError",
    "IllegalTransition",
    "InvalidArgumentError",
    "PayloadError",
    "ResultNotSerializableError",
    "RunNotFoundError",
    "RunTerminalError",
    "ScheduleNotFoundError",
    "StepNotTransactionalError",
    "UnknownWorkflowError",
    "WaitTimeoutError",
    "WorkflowNotRegisteredError",
    "WrongSessionError",
]


class DatabaseUnreachableError(DurableError, ConnectionError):
    """A worker or relay could not reach its database within its start-up timeout."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(
            f"could not reach the database within {seconds:g} s ({reason}); check that it "
            "is up and the URL is right, or allow longer with startup_timeout "
            "(--startup-timeout SECONDS)"
        )
        self.seconds = seconds
        self.reason = reason


class DatabaseNotMigratedError(DurableError):
    """The database lacks an object of durable-sa's schema that this version needs.

    Run ``engine.create_tables()`` again (it creates what is missing), or
    ``durable_sa.schema.create_triggers(op)`` in a migration.
    """


class MetricsNotInstalledError(DurableError, ImportError):
    """Prometheus metrics need prometheus-client: pip install 'durable-sa[metrics]'."""


def first_line(error: BaseException) -> str:
    """The first line of a database error as its driver worded it: no SQL, no parameters.

    What a one-line message to a person may quote (the CLI's errors, the metrics' log).
    """
    orig = getattr(error, "orig", None) or error
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__
