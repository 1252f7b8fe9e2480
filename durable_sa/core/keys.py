"""The state keys the engine keeps for itself inside a run's results.

A run's ``state`` holds each step's result under the step's name, and a few entries of
the engine's own beside them. Those start with :data:`RESERVED_PREFIX`, which no step,
entry or signal name may use, and are hidden from ``ctx.results``. They live here, below
the definitions, the context and the snapshots, because all three read them.
"""

from __future__ import annotations

from typing import Final

RESERVED_PREFIX: Final = "__durable"
"""Result keys starting with this are the engine's own and hidden from ``ctx.results``."""
RESUME_KEY: Final = f"{RESERVED_PREFIX}_resume__"
"""State key holding the payload of the last resume (read by ``ctx.resume_data()``)."""
WAIT_KEY: Final = f"{RESERVED_PREFIX}_wait__"
"""State key describing what a suspended run waits for: a signal, an agent or a child."""
