"""Who pays for a worker's death: claims in company and claims alone, on both databases.

A batch never takes over a lapsed lease; taking over one that was claimed in company
gives its attempt back, taking over one that was claimed alone counts it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from durable_sa import Durable, durable
from durable_sa.queue.jobs_table import JobsTableBackend
from durable_sa.queue.protocol import ClaimKind
from durable_sa.store.models import jobs_table

LEASE = timedelta(seconds=30)
T0 = datetime(2030, 1, 1, tzinfo=UTC)
LATER = T0 + 2 * LEASE  # every lease taken at T0 has run out


def _backend(engine: Durable) -> JobsTableBackend:
    assert isinstance(engine.backend, JobsTableBackend)
    return engine.backend


def _start(engine: Durable, runs: int) -> None:
    durable("claimed").step("a", lambda _ctx: 1)
    for i in range(runs):
        engine.start("claimed", {"i": i})


def _claim(
    engine: Durable, kind: ClaimKind, *, now: datetime, limit: int = 10
) -> list[tuple[int, int]]:
    claims = _backend(engine).claim_batch(
        now=now, worker=f"w-{kind.value}", lease=LEASE, limit=limit, kind=kind
    )
    return [(claim.job.id, claim.job.attempts) for claim in claims]


def test_a_batch_never_takes_over_a_lapsed_lease(engine: Durable) -> None:
    _start(engine, 3)
    first = _claim(engine, ClaimKind.BATCH, now=T0)
    assert [attempts for _id, attempts in first] == [1, 1, 1]
    assert _claim(engine, ClaimKind.BATCH, now=LATER) == []  # lapsed, not for a batch
    assert _backend(engine).has_lapsed(now=LATER)
    assert not _backend(engine).has_lapsed(now=T0)


def test_taking_over_a_job_claimed_in_company_gives_its_attempt_back(engine: Durable) -> None:
    _start(engine, 3)
    ids = [job_id for job_id, _ in _claim(engine, ClaimKind.BATCH, now=T0)]
    taken = [_claim(engine, ClaimKind.RECOVERED, now=LATER) for _ in ids]
    assert taken == [[(job_id, 1)] for job_id in ids]  # one each, still at one attempt
    assert _claim(engine, ClaimKind.RECOVERED, now=LATER) == []  # all taken, leases fresh
    assert not _backend(engine).has_lapsed(now=LATER)


def test_taking_over_a_job_claimed_alone_counts_an_attempt(engine: Durable) -> None:
    _start(engine, 2)
    [(job_id, attempts)] = _claim(engine, ClaimKind.ANY, now=T0)
    assert attempts == 1
    later = LATER
    for expected in (2, 3, 4):  # each death while alone is charged
        assert _claim(engine, ClaimKind.RECOVERED, now=later) == [(job_id, expected)]
        later += 2 * LEASE


def test_a_recovered_claim_takes_one_job_and_any_takes_lapsed_ones(engine: Durable) -> None:
    _start(engine, 3)
    ids = [job_id for job_id, _ in _claim(engine, ClaimKind.BATCH, now=T0)]
    assert len(_claim(engine, ClaimKind.RECOVERED, now=LATER, limit=10)) == 1
    # claim() (one job, alone) takes a lapsed lease too, given back as it was in company
    assert _claim(engine, ClaimKind.ANY, now=LATER) == [(ids[1], 1)]
    assert engine.admin.claim(now=LATER, lease=LEASE).id == ids[2]  # type: ignore[union-attr]


RESCANNING_PLANNER = (
    "-c enable_hashagg=off -c enable_hashjoin=off -c enable_mergejoin=off "
    "-c enable_material=off -c enable_sort=off"
)
"""Planner settings under which PostgreSQL joins the jobs to the pick of due jobs with a
nested loop that runs the pick again for every job row; with some table statistics it
chooses that plan by itself (it did in the exhaustive checker's runs, now and then)."""


def test_a_claim_leases_no_more_jobs_than_it_asked_for_whatever_the_plan(
    durable_postgres_url: str,
) -> None:
    """A pick run again skips the rows its own statement just leased and takes the next
    due ones: ``claim()`` then leased every due job, returned one, and the others sat
    leased by nobody running them until the lease ran out (a job left behind)."""
    sa_engine = sa.create_engine(durable_postgres_url, connect_args={"options": RESCANNING_PLANNER})
    try:
        engine = Durable(sa_engine)
        engine.create_tables()
        _start(engine, 4)
        one = engine.admin.claim(now=T0, lease=LEASE, fifo=True)
        two = _claim(engine, ClaimKind.BATCH, now=T0, limit=2)
        with sa_engine.connect() as conn:
            leased = (
                conn.execute(
                    sa.select(jobs_table.c.id)
                    .where(jobs_table.c.claimed_by.isnot(None))
                    .order_by(jobs_table.c.id)
                )
                .scalars()
                .all()
            )
        assert one is not None
        assert leased == [one.id, *(job_id for job_id, _ in two)]
    finally:
        sa_engine.dispose()
