"""The conformance suite every queue backend must pass, as pytest classes to subclass.

A backend's test module subclasses the classes here and provides fixtures; pytest then
collects every inherited test for that backend::

    from durable_sa.testing.conformance import ClaimConformance, DeliveryConformance

    class TestMyBackendDelivery(DeliveryConformance):
        @pytest.fixture
        def conformance_engine(self, sa_engine):       # the engine under test
            engine = Durable(sa_engine, backend="mybroker://...")
            engine.create_tables()
            return engine

        @pytest.fixture
        def conformance_malformed(self):                # put one unreadable job in
            return lambda engine: ...

    class TestMyBackendClaims(ClaimConformance): ...   # if durable-sa workers consume it

- :class:`DeliveryConformance`: end to end, through the backend's consumers (a
  durable-sa worker in this process by default; override ``conformance_consumers`` for
  consumers of your own, e.g. Celery worker processes; ``conformance_defer_delay`` if
  they were built with a shorter ``defer_delay``). The reference scenarios
  (sequential, parallel, signal, sleep, child, saga) complete; a job queued in a
  rolled-back transaction never runs; a duplicate job is harmless; a malformed job is
  dead-lettered with a clear error and the consumers go on; a job pinned to a definition
  version no consumer has waits, is never dead-lettered, and runs once a consumer has
  it (the one delivery policy); nothing stays pending.
- :class:`ClaimConformance`: the consuming half of the protocol, call by call, for
  backends that durable-sa workers consume: leases, acknowledgement only on commit,
  release with a retry time, renewals, dead letters and requeue, attempts running out.

Relay backends are driven through their relay (``publish``), so the suite also checks
that the outbox and the relay deliver what was committed, and only that.

Each suite has its module (:mod:`~durable_sa.testing.conformance.delivery`,
:mod:`~durable_sa.testing.conformance.claims`); what both use, and a backend's own tests
may too (``eventually``, ``publish``, a worker in this process), is in
:mod:`~durable_sa.testing.conformance.support`.
"""

from durable_sa.testing.conformance.claims import ClaimConformance
from durable_sa.testing.conformance.delivery import DeliveryConformance
from durable_sa.testing.conformance.support import (
    WAIT_SECONDS,
    eventually,
    in_process_worker,
    publish,
)

__all__ = [
    "WAIT_SECONDS",
    "ClaimConformance",
    "DeliveryConformance",
    "eventually",
    "in_process_worker",
    "publish",
]
