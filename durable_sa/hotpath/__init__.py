"""The worker's fast lane for the built-in jobs table: a step in one statement.

The general path (:mod:`durable_sa.handlers`) spends three transactions on a step: the
claim, an unlocked read of the run, and a locked decision with its acknowledgement. For
the common case, a task step of a running run, this package does the same work in two
statements and hands the next step to the same worker:

- **Claim and read at once** (:mod:`.pg`): one statement leases the due job and returns
  the run row beside it.
- **Write with compare-and-set**: the core decides on the snapshot it read, and one
  statement applies the decision only if the run row still has the revision it was read
  at; it journals the step, moves the run on, deletes the finished job and inserts the
  next one already claimed by this worker. Nothing is locked while the handler runs, and a
  run that moved meanwhile (a cancel, a signal, a duplicate) makes the statement a no-op,
  after which the general path decides again under a lock.
- **Continue in place**: the next step of the run starts from the snapshot the write
  produced, with no claim and no read.
- **Group commit** (:mod:`.lane`): a slot does not wait for its step's commit; it runs
  the next ready step (of another run) meanwhile, and a committer thread writes all the
  steps that finished during one commit in the next one. An idle worker commits at once.

Everything else (compensation, signal timeouts, child runs, parallel and loop steps,
transactional steps, bad jobs) takes the general path, which stays the reference.
"""
