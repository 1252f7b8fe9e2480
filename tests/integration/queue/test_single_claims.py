"""A backend with only ``QueueBackend.claim`` is consumed by the same pipeline, one claim at a time.

Third-party backends written against the plain protocol have no batch claims and no
in-place inserts. The worker has no second loop for them: its pipeline wraps them in
:class:`~durable_sa.queue.single_claims.SingleClaims`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from durable_sa import Durable, RunStatus
from durable_sa.backends import Capabilities
from durable_sa.errors import InvalidArgumentError
from durable_sa.queue.jobs_table import JobsTableBackend
from durable_sa.queue.protocol import BatchClaims, InPlaceProducer, QueueBackend
from durable_sa.queue.single_claims import SingleClaims
from durable_sa.testing import scenarios

if TYPE_CHECKING:
    import sqlalchemy as sa

_PROTOCOL = (
    "enqueue",
    "discard",
    "claim",
    "ack",
    "release",
    "defer",
    "dead_letter",
    "renew",
    "release_claims",
    "next_due",
    "requeue",
    "add_wake_callback",
    "remove_wake_callback",
    "live_run_ids",
    "pending_count",
    "clear",
)


class PlainBackend:
    """The jobs table seen through :class:`QueueBackend` alone (no batches, no in place)."""

    name = "plain"
    capabilities = Capabilities()

    def __init__(self, sa_engine: sa.Engine) -> None:
        self.inner = JobsTableBackend(sa_engine)
        self.claims = 0

    def __getattr__(self, attribute: str) -> Any:
        if attribute not in _PROTOCOL:
            raise AttributeError(attribute)
        return getattr(self.inner, attribute)

    def claim(self, **options: Any) -> Any:
        self.claims += 1
        return self.inner.claim(**options)


def test_a_plain_backend_runs_every_scenario_through_the_pipeline(
    engine: Durable,
) -> None:
    backend = PlainBackend(engine.sa_engine)
    assert isinstance(backend, QueueBackend)
    assert not isinstance(backend, BatchClaims)
    assert not isinstance(backend, InPlaceProducer)
    plain = Durable(engine.sa_engine, backend=backend)
    scenarios.define_scenarios()
    runs = [plain.start(scenarios.SEQUENTIAL, {"n": i}).run_id for i in range(4)]
    runs.append(plain.start(scenarios.PARALLEL, {}).run_id)
    with plain.worker(
        concurrency=2, heartbeat=timedelta(seconds=0.2), lease=timedelta(seconds=2)
    ) as worker:
        assert isinstance(worker._pipeline.claims, SingleClaims)
        finals = [plain.wait(run_id, timeout=30) for run_id in runs]
    assert [final.status for final in finals] == [RunStatus.COMPLETED] * len(runs)
    assert finals[0].results == {"one": 1, "two": 2, "three": 3}
    # Every step was a claim of one job: nothing continued in place without the queue.
    assert worker.stats.claimed == 4 * 3 + 3  # three steps in each scenario
    assert backend.claims >= worker.stats.claimed
    assert plain.backend.pending_count() == 0


class Boasting(PlainBackend):
    """Declares batches it cannot claim."""

    capabilities = Capabilities(batch_claims=True)


class Undeclared(PlainBackend):
    """Says nothing of what it can do."""

    capabilities = None  # type: ignore[assignment]


def test_a_backend_is_held_to_what_it_declares(engine: Durable) -> None:
    with pytest.raises(InvalidArgumentError, match="declares batch_claims"):
        Durable(engine.sa_engine, backend=Boasting(engine.sa_engine))
    with pytest.raises(InvalidArgumentError, match="must declare its abilities"):
        Durable(engine.sa_engine, backend=Undeclared(engine.sa_engine))


def test_an_ability_set_the_former_way_is_refused_not_ignored() -> None:
    with pytest.raises(InvalidArgumentError, match=r"capabilities = attrs.evolve"):

        class Former(JobsTableBackend):
            claims_wait = True
