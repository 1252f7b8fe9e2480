"""The engine: how a job becomes writes, for every consumer.

- :mod:`~durable_sa.engine.shell`: the imperative shell (sessions, clock, the applier,
  the commit-boundary test hook) that everything below the user API shares;
- :mod:`~durable_sa.engine.runner`: one claimed job, from its user code to its write plan
  (phase A, decide, commit alone or hand to a worker's committer);
- :mod:`~durable_sa.engine.applier`: the one applier, which writes plans alone or grouped.

It sits on the queue and the store and knows nothing of worker processes, relays or the
user-facing :class:`~durable_sa.Durable`.
"""
