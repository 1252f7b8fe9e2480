"""Taking work into a pipeline's hand: batches, and a lapsed job taken over alone.

A slot with nothing ready claims what the hand has room for, in one batch (one
statement on the jobs table; a read of the broker, which may wait, for a relay
backend). A job whose lease ran out (its worker died, maybe because of another job it
held) is taken over only alone: the pipeline stops claiming, lets its hand empty,
claims that one job by itself, and resumes batches once it is done. Claimed alone, a
job that kills its worker is charged for it; the innocent jobs that died with it in
company are not (see :mod:`durable_sa.queue.claims`).

While plans are being committed, a slot claims only when at least half the hand is free
(:func:`worth_claiming`): the commit hands the runs' next steps back soon. Claiming each
place as it frees would split the hand into cohorts of runs at different steps, each
claimed and committed apart from the others, and they would stay apart: more
statements for the same work (a rate-limit grant asked for mid-hand is enough to start
it).
"""

from __future__ import annotations

import logging
import time

from durable_sa.queue.protocol import Claim, ClaimKind
from durable_sa.worker.hand import Hand, Ready, Work

logger = logging.getLogger("durable_sa.worker.pipeline")
"""The pipeline's logger, whichever of its modules writes: log filters keep working."""


def worth_claiming(room: int, max_in_hand: int, *, in_flight: bool) -> bool:
    """Whether a slot with nothing ready claims ``room`` jobs now (see the module rules).

    ``in_flight``: plans of the hand are pending or being committed, so its runs' next
    steps come back soon; a claim then waits until at least half the hand is free.
    """
    return room > 0 and (not in_flight or 2 * room >= max_in_hand)


class Claiming(Hand):
    """Taking work: the claiming part of :class:`~durable_sa.worker.pipeline.Pipeline`."""

    def look_for_lapsed(self) -> None:
        """Called by the heartbeat: if a job's lease ran out, go and take it over alone."""
        if self._isolating or self._stalled:
            return
        if self.claims.has_lapsed(
            now=self.shell.now(), queues=self.queues, workflows=self._workflows()
        ):
            self._isolating = True
            logger.info(
                "a job's lease ran out: finishing the jobs in hand, then taking it over alone",
                extra={"action": "isolate", "worker": self.worker},
            )

    def next_work(self, *, may_claim: bool) -> Work | None:
        """Ready work in hand, or newly claimed work; ``None`` when there is none now."""
        with self._lock:
            if self._ready:
                return self._ready.popleft()
        if not may_claim or self._stalled:
            return None
        # A broker's read may wait for messages: one slot waits there, the others idle
        # until what it reads (or a commit) wakes them.
        waits = self.capabilities.claims_wait
        if not self._claim_lock.acquire(blocking=not waits):
            return None
        try:
            claims = self._claim_into_hand()
            with self._lock:
                work = self._ready.popleft() if self._ready else None
        finally:
            self._claim_lock.release()
        if len(claims) > 1 or (claims and waits):
            self._wake()  # more than this slot can take, or another slot must read on
        return work

    def _claim_into_hand(self) -> list[Claim]:
        """Claim what the hand has room for (the claim lock is held); the claims."""
        with self._lock:
            if self._ready:  # another slot's claim brought work meanwhile
                return []
            room = self.max_in_hand - len(self._held)
            empty = not self._held
            in_flight = bool(self._pending or self._opens or self._committing)
            if self._alone is not None and self._alone in self._held:
                return []  # nothing is claimed beside a job taken over alone
        if self._isolating and not empty:
            return []  # the hand empties first
        claims = self._take_over() if self._isolating else []
        if not claims and worth_claiming(room, self.max_in_hand, in_flight=in_flight):
            # Wait for a broker only when nothing in hand can become ready meanwhile.
            wait = not in_flight
            claims = self._claim(room, wait=wait)
            if not claims and empty:  # nothing new: a lapsed lease, maybe
                claims = self._take_over()
        with self._lock:
            for claim in claims:
                self._held[claim.job.id] = claim.job
            self._ready.extend(Ready(claim) for claim in claims)
        return claims

    def _take_over(self) -> list[Claim]:
        """Claim one job whose lease ran out, alone (the hand is empty)."""
        claims = self._claim(1, kind=ClaimKind.RECOVERED)
        self._isolating = bool(claims)  # look again once it is done, until none is left
        self._alone = claims[0].job.id if claims else None
        return claims

    def _claim(
        self, limit: int, *, kind: ClaimKind = ClaimKind.BATCH, wait: bool = False
    ) -> list[Claim]:
        began = time.perf_counter()
        try:
            claims = self.claims.claim_batch(
                now=self.shell.now(),
                worker=self.worker,
                lease=self.lease,
                limit=limit,
                queues=self.queues,
                workflows=self._workflows(),
                connection=None if self._claim_connection is None else self._claim_connection.get(),
                kind=kind,
                wait=wait,
            )
        except Exception:
            if self._claim_connection is not None:
                self._claim_connection.broken()
            raise
        self.stats.claim_seconds.append(time.perf_counter() - began)
        self.stats.claims += 1
        self.stats.claimed += len(claims)
        self._on_claimed(len(claims))
        return claims
