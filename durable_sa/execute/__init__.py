"""Running user code: handlers, parallel entries and compensators, with no database.

This layer turns one step's execution into a :mod:`durable_sa.core.outcomes` value. It
calls user code (plain or ``async def``), so it is not pure, but it never touches the
database: the shell reads before it and writes after it.
"""
