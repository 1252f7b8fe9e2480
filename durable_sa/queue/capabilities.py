"""What a queue backend can do beyond the basic protocol, declared once by the backend.

The engine never probes a backend (``type() is``, ``isinstance`` against optional
protocols, ``getattr`` with a default) to choose a path: it reads the backend's
:class:`Capabilities` value, and :func:`durable_sa.queue.backends.check_capabilities`
refuses, when the engine is built, a backend whose declaration does not match the
methods it has. A backend that declares nothing new (``Capabilities()``) is a plain
queue: one claim at a time, jobs written by its own ``enqueue``, consumed by durable-sa
workers.
"""

from __future__ import annotations

import attrs

from durable_sa.errors import InvalidArgumentError


@attrs.frozen(kw_only=True)
class Capabilities:
    """A backend's declared abilities; every flag defaults to the plain queue's answer."""

    batch_claims: bool = False
    """Implements :class:`~durable_sa.queue.protocol.BatchClaims`: a worker claims many
    jobs per call and reads their runs in one query. Otherwise the worker wraps the
    backend's ``claim`` (:class:`~durable_sa.queue.single_claims.SingleClaims`)."""
    claims_on_connection: bool = False
    """Claims are statements on the engine's database, so a worker lends the claim the
    connection it holds (the jobs table); False for a broker."""
    claims_wait: bool = False
    """A claim may block until the broker has messages (Redis ``XREADGROUP BLOCK``);
    False: idle workers sleep until ``next_due`` or a NOTIFY instead."""
    in_place: bool = False
    """Implements :class:`~durable_sa.queue.protocol.InPlaceProducer`: a worker that
    finishes a step whose next step is due now writes that job already claimed by itself
    and runs it at once."""
    applier_writes_rows: bool = False
    """The applier may write this backend's rows itself, in the one statement that
    applies a group (needs ``in_place``). A subclass of a built-in backend that overrides
    how jobs are written loses it, so its own methods are called for every job."""
    outbox: bool = False
    """An :class:`~durable_sa.outbox.backend.OutboxBackend`: jobs are written to the
    outbox table and a relay publishes them; workers run a relay unless told not to."""
    consumed_by_workers: bool = True
    """durable-sa workers claim this backend's jobs (False: the broker's own workers do,
    as Celery's; a durable-sa worker then only relays)."""
    tracks_delivery: bool = False
    """An outbox row stays until its job is done and is published again if it outlives
    ``redeliver_after`` (for brokers that can lose a message silently)."""


_FORMER_FLAGS = (
    "consumed_by_workers",
    "tracks_delivery",
    "applier_writes_rows",
    "claims_on_connection",
    "claims_wait",
)
"""Class attributes that used to carry these abilities: setting one now would be ignored."""


def refuse_former_flags(cls: type) -> None:
    """Refuse a backend class that sets an ability as a bare class attribute.

    Those attributes were read once; now only ``capabilities`` is, so such a class would
    silently lose what it meant to say.

    Raises:
        InvalidArgumentError: ``cls`` defines one of the former attributes.

    """
    found = [name for name in _FORMER_FLAGS if name in vars(cls)]
    if found:
        settings = ", ".join(f"{name}={getattr(cls, name)!r}" for name in found)
        msg = (
            f"{cls.__name__} sets {', '.join(found)} as class attributes; declare them in "
            f"its capabilities instead: capabilities = attrs.evolve(<base>.capabilities, "
            f"{settings})"
        )
        raise InvalidArgumentError(msg)
