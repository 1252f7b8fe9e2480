"""The held PostgreSQL connections of a worker's pipeline, and why each is set up so.

A pipeline keeps two autocommit connections of its own on PostgreSQL, besides the
application's pool: one its claims run on, one the groups that are a single statement
are written on (one round trip each, and the server keeps the statements prepared).
Elsewhere (SQLite) it has none, and uses sessions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from durable_sa.store.held import HeldConnection

if TYPE_CHECKING:
    from datetime import timedelta

    from durable_sa.engine.shell import Shell


def claim_connection(shell: Shell) -> HeldConnection | None:
    """PostgreSQL, a backend whose claims are statements: their held connection.

    Claims on it do not wait for the WAL flush (a lost claim only makes a job claimable
    again). On it the planner reads the due jobs in the order of their index (no table
    or bitmap scan): with statistics taken when the jobs table was small (a backlog that
    grew faster than autovacuum analyzes it), it would otherwise scan and sort the whole
    backlog on every claim, since ``FOR UPDATE`` keeps it from sorting only the first
    rows.
    """
    if shell.dialect != "postgresql" or not shell.backend.capabilities.claims_on_connection:
        return None
    return HeldConnection(
        shell.sa_engine,
        settings=[
            "SET synchronous_commit TO OFF",
            "SET enable_seqscan TO OFF",
            "SET enable_bitmapscan TO OFF",
        ],
        resets=[
            "RESET synchronous_commit",
            "RESET enable_seqscan",
            "RESET enable_bitmapscan",
        ],
    )


def write_connection(shell: Shell, commit_timeout: timedelta | None) -> HeldConnection | None:
    """PostgreSQL: the held connection a group that is one statement is written on.

    With ``commit_timeout``, a write blocked longer (a row lock, a half-open
    connection) fails instead of holding the committer.
    """
    if shell.dialect != "postgresql":
        return None
    settings, resets = _timeout_settings(commit_timeout)
    return HeldConnection(shell.sa_engine, settings=settings, resets=resets)


def _timeout_settings(timeout: timedelta | None) -> tuple[list[str], list[str]]:
    """PostgreSQL session settings that make a blocked write fail after ``timeout``."""
    if timeout is None:
        return [], []
    ms = max(1, int(timeout.total_seconds() * 1000))
    return (
        [f"SET lock_timeout = {ms}", f"SET statement_timeout = {ms}"],
        ["RESET lock_timeout", "RESET statement_timeout"],
    )
