"""The process-wide workflow registry.

``durable(name)`` puts a definition here; a worker looks it up by the name stored on a run.

A name maps to one definition at a time; defining the same name again replaces it (so a
module re-imported by a test runner or a reloader does not fail).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from durable_sa.errors import WorkflowNotRegisteredError

if TYPE_CHECKING:
    from durable_sa.core.workflow import DurableWorkflow


class WorkflowRegistry:
    """Named workflow definitions, safe to read from many threads."""

    def __init__(self) -> None:
        self._workflows: dict[str, DurableWorkflow] = {}
        self._lock = threading.Lock()

    def register(self, workflow: DurableWorkflow) -> DurableWorkflow:
        """Add ``workflow`` under its name, replacing any earlier definition."""
        with self._lock:
            self._workflows[workflow.name] = workflow
        return workflow

    def has(self, name: str) -> bool:
        """True when a workflow is registered under ``name``."""
        return name in self._workflows

    def get(self, name: str) -> DurableWorkflow:
        """The workflow registered under ``name``.

        Raises:
            WorkflowNotRegisteredError: nothing is registered under that name.

        """
        try:
            return self._workflows[name]
        except KeyError:
            raise WorkflowNotRegisteredError(name, self.names()) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._workflows)

    def unregister(self, name: str) -> None:
        """Forget ``name`` (no error when it is unknown)."""
        with self._lock:
            self._workflows.pop(name, None)

    def clear(self) -> None:
        """Forget every workflow. For tests."""
        with self._lock:
            self._workflows.clear()

    reset = clear

    def __contains__(self, name: object) -> bool:
        return name in self._workflows

    def __len__(self) -> int:
        return len(self._workflows)


registry = WorkflowRegistry()
"""The registry every ``durable(...)`` call writes to."""
