"""The engine: how a job becomes writes, for every consumer.

- :mod:`~durable_sa.engine.shell`: the imperative shell (sessions, clock, the applier,
  the commit-boundary test hook) that everything below the user API shares;
- :mod:`~durable_sa.engine.runner`: one claimed job, from its user code to its write plan
  (phase A, decide, commit alone or hand to a worker's committer), with
  :mod:`~durable_sa.engine.execution` (a step's user code),
  :mod:`~durable_sa.engine.decision` (what phase A hands on; committing it alone),
  :mod:`~durable_sa.engine.transactional` (``transactional=True`` steps) and
  :mod:`~durable_sa.engine.delivery` (the delivery policy: dead-letter, defer, give back);
- :mod:`~durable_sa.engine.async_bridge`: the sync calls run for asyncio code (in the
  caller's ``AsyncSession`` through ``run_sync``, on an ``AsyncEngine``, or in a thread);
- :mod:`~durable_sa.engine.applier`: the one applier, which writes plans alone or grouped,
  with :mod:`~durable_sa.engine.plan_rows` (plans as statement parameters) and
  :mod:`~durable_sa.engine.new_runs` (the runs plans create).

It sits on the queue and the store and knows nothing of worker processes, relays or the
user-facing :class:`~durable_sa.Durable`.
"""
