"""The state keys reserved for the engine inside a run's results.

A run's ``state`` holds each step's result under the step's name and nothing else: what
a suspended run waits for and the payload of its last resume have columns of their own
(``wait_kind``, ``wait_step``, ``awaiting_signal``, ``resume_data``). Names starting with
:data:`RESERVED_PREFIX` stay reserved (no step, entry or signal may use one), so the
engine can add keys of its own later without colliding with a user's step, and any such
key is hidden from ``ctx.results``.
"""

from __future__ import annotations

from typing import Final

RESERVED_PREFIX: Final = "__durable"
"""Result keys starting with this are the engine's own and hidden from ``ctx.results``."""
