"""Why a run waits, as status() and list() (and the CLI) say: pause, rate limit, both limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from durable_sa import Durable, durable
from durable_sa.core.status import RunStatus
from durable_sa.testing import drain

HOUR = timedelta(hours=1)


def _next_at(reason: str, prefix: str) -> datetime:
    assert reason.startswith(prefix), reason
    assert reason.endswith(")"), reason
    return datetime.fromisoformat(reason.removeprefix(prefix)[:-1])


def test_a_step_deferred_by_a_rate_limit_names_the_limit_and_when(engine: Durable) -> None:
    engine.set_rate_limit("api", limit=1, per=HOUR)
    durable("calls").step("call", lambda ctx: "called", rate_limit="api")
    first = engine.start("calls").run_id
    second = engine.start("calls").run_id
    drain(engine)  # the first takes the grant; the second is given back for an hour

    assert engine.status(first).status is RunStatus.COMPLETED
    assert engine.status(first).waiting_reason is None
    held = engine.status(second)
    assert held.status is RunStatus.RUNNING
    assert held.waiting_reason is not None
    due = _next_at(held.waiting_reason, "rate limit 'api' (next at ")
    # Due when the window lets it begin: an hour after the grant (the database's clock).
    assert abs(due - (datetime.now(UTC) + HOUR)) < timedelta(minutes=1)
    listed = {s.run_id: s.waiting_reason for s in engine.list(workflow="calls")}
    assert listed == {first: None, second: held.waiting_reason}

    engine.set_rate_limit("api", limit=5, per=HOUR)
    drain(engine, now=due + timedelta(seconds=1))  # the job's due time has come
    done = engine.status(second)
    assert (done.status, done.waiting_reason) == (RunStatus.COMPLETED, None)


def test_a_limit_that_is_not_set_says_what_to_do(engine: Durable) -> None:
    durable("unset-limit").step("call", lambda ctx: "called", rate_limit="partner")
    run_id = engine.start("unset-limit").run_id
    drain(engine)
    reason = engine.status(run_id).waiting_reason
    assert reason is not None
    assert reason.startswith("rate limit 'partner' is not set: call engine.set_rate_limit(")
    assert "(next look at " in reason


def test_runs_of_a_paused_workflow_say_so_pending_ones_with_their_limit(engine: Durable) -> None:
    durable("paused-shown", max_active=1).wait_for_signal("go", "go")
    active = engine.start("paused-shown").run_id
    pending = engine.start("paused-shown").run_id
    durable("not-paused").step("a", lambda ctx: 1).wait_for_signal("go", "go")
    other = engine.start("not-paused").run_id
    engine.pause("paused-shown")

    assert engine.status(active).waiting_reason == "workflow paused"
    assert engine.status(pending).waiting_reason == (
        "workflow paused; then limit of workflow 'paused-shown' (1/1 active)"
    )
    assert engine.status(other).waiting_reason is None
    listed = {s.run_id: s.waiting_reason for s in engine.list()}
    assert listed[active] == "workflow paused"
    assert listed[other] is None

    engine.unpause("paused-shown")
    drain(engine)
    assert engine.status(active).waiting_reason is None  # suspended: its own wait
    assert engine.status(pending).waiting_reason == "limit of workflow 'paused-shown' (1/1 active)"
    engine.resume(active, "go", None)
    assert engine.status(active).waiting_reason is None  # ended: nothing holds it


def test_both_limits_are_named_when_both_bind(engine: Durable) -> None:
    durable("doubly-limited", max_active=1, max_active_per_key=1).wait_for_signal("go", "go")
    engine.start("doubly-limited", concurrency_key="k")
    waiting = engine.start("doubly-limited", concurrency_key="k").run_id
    assert engine.status(waiting).waiting_reason == (
        "limit of workflow 'doubly-limited' (1/1 active) and limit of key 'k' (1/1 active)"
    )


def test_the_cli_shows_a_rate_limit_hold_and_a_pause(
    engine: Durable, durable_each_database_url: str, cli: object
) -> None:
    engine.set_rate_limit("cli-api", limit=1, per=HOUR)
    durable("cli-calls").step("call", lambda ctx: "called", rate_limit="cli-api")
    engine.start("cli-calls")
    held = engine.start("cli-calls").run_id
    drain(engine)
    url = ("--database-url", durable_each_database_url)

    code, out, _ = cli("list", "--workflow", "cli-calls", *url)  # type: ignore[operator]
    assert code == 0
    (line,) = [row for row in out.splitlines() if row.startswith(str(held))]
    assert "waiting: rate limit 'cli-api' (next at " in line
    _, out, _ = cli("status", str(held), *url)  # type: ignore[operator]
    assert "waiting: rate limit 'cli-api' (next at " in out

    engine.pause("cli-calls")
    _, out, _ = cli("status", str(held), *url)  # type: ignore[operator]
    assert "paused: workflow cli-calls is paused" in out
    _, out, _ = cli("list", "--workflow", "cli-calls", *url)  # type: ignore[operator]
    assert "waiting: workflow paused" in out
