"""``make demo``: an order saga on an embedded SQLite file, with a crash in the middle.

It shows the whole promise in one screen: a run is checkpointed step by step, the process
"dies" after two steps, a fresh engine resumes from the first unfinished step without
re-running anything, a signal parks the run until someone approves it, and a second
order whose shipment fails is rolled back by its compensators in reverse order.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from durable_sa import Durable, JournalEntry, ParallelEntry, durable
from durable_sa.testing import drain

if TYPE_CHECKING:
    from collections.abc import Sequence

    from durable_sa import DurableContext

CALLS: list[str] = []

DEFAULT_URL: Final = "sqlite:///durable-sa-demo.sqlite"


def _work() -> None:
    """Pretend each handler does real work (``DURABLE_SA_DEMO_STEP_SECONDS``, default 0)."""
    time.sleep(float(os.environ.get("DURABLE_SA_DEMO_STEP_SECONDS", "0")))


def reserve_stock(ctx: DurableContext) -> dict[str, object]:
    """Hold the item in the warehouse."""
    _work()
    CALLS.append("reserve_stock")
    return {"reservation": f"R-{ctx.input['order_id']}", "sku": ctx.input["sku"]}


def release_stock(ctx: DurableContext) -> None:
    """Give the reservation back (compensation)."""
    CALLS.append("release_stock (compensation)")


def charge_card(ctx: DurableContext) -> dict[str, object]:
    """Charge the customer's card."""
    _work()
    CALLS.append("charge_card")
    return {"charge": f"ch_{ctx.input['order_id']}", "amount": ctx.input["amount"]}


def refund_card(ctx: DurableContext) -> None:
    """Refund the charge (compensation)."""
    CALLS.append("refund_card (compensation)")


def fraud_check(ctx: DurableContext) -> str:
    """Score the order for fraud."""
    _work()
    CALLS.append("fraud_check")
    return "clear"


def ship(ctx: DurableContext) -> dict[str, object]:
    """Hand the parcel to the carrier; fails for a bad address."""
    _work()
    CALLS.append("ship")
    if ctx.input.get("address") == "nowhere":
        msg = "carrier rejected the address"
        raise RuntimeError(msg)
    return {"tracking": f"TRK{ctx.run_id:05d}", "approved_by": ctx.results["approval"]["by"]}


def define() -> None:
    """The order workflow: reserve, charge + fraud check in parallel, approval, ship."""
    (
        durable("order")
        .step("reserve", reserve_stock, compensate=release_stock)
        .parallel(
            "payment",
            [ParallelEntry("charge", charge_card, compensate=refund_card), ("fraud", fraud_check)],
        )
        .wait_for_signal("approval", "warehouse-approval", timeout=timedelta(days=2))
        .step("ship", ship, max_retries=2, retry_backoff="linear")
    )


def show(engine: Durable, run_id: int, title: str) -> None:
    """Print the run's status, its steps and its journal."""
    snap = engine.status(run_id)
    print(f"\n── {title} ─ run {run_id} ──")
    print(f"status: {snap.status}   step {snap.current_step}/{snap.total_steps}", end="")
    if snap.awaiting_signal:
        print(f"   waiting for signal {snap.awaiting_signal!r}", end="")
    if snap.error:
        print(f"   error: {snap.error}", end="")
    print()
    with Session(engine.sa_engine) as session:
        rows = session.scalars(
            select(JournalEntry).where(JournalEntry.run_id == run_id).order_by(JournalEntry.id)
        ).all()
        print(f"  {'journal unit':<22} {'status':<10} result / error")
        for row in rows:
            detail = row.error or row.result
            print(f"  {row.step_id:<22} {row.status:<10} {detail}")


def app() -> Durable:
    """The demo for a real worker: ``durable-sa worker examples.demo:app``.

    It defines the order workflow and binds an engine to ``DURABLE_SA_DATABASE_URL``
    (default: ``durable-sa-demo.sqlite`` in the current directory).
    """
    define()
    engine = Durable(create_engine(os.environ.get("DURABLE_SA_DATABASE_URL", DEFAULT_URL)))
    engine.create_tables()
    return engine


def start_orders(count: int) -> list[int]:
    """Start ``count`` orders on :func:`app`'s database without running them."""
    engine = app()
    run_ids = [
        engine.start("order", {"order_id": 2000 + i, "sku": "BOOK-42", "amount": 39.9}).run_id
        for i in range(count)
    ]
    url = engine.sa_engine.url.render_as_string(hide_password=True)
    print(f"started order runs {run_ids} on {url}")
    print("run them in another terminal:   durable-sa worker examples.demo:app")
    print(f"watch them:                       durable-sa list --database-url {url}")
    print(
        "approve one:                      durable-sa resume RUN_ID warehouse-approval "
        f'--data \'{{"by": "dana"}}\' --database-url {url}'
    )
    return run_ids


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; ``--db PATH`` keeps the SQLite file (default: a temporary one).

    ``--start N`` only starts N orders on ``DURABLE_SA_DATABASE_URL`` (or the demo
    file) for a real worker to run.
    """
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    parser.add_argument("--db", help="SQLite file to use (default: a temporary file)")
    parser.add_argument(
        "--start", type=int, metavar="N", help="only start N orders, for a worker to run"
    )
    args = parser.parse_args(argv)
    if args.start is not None:
        if args.db:
            os.environ["DURABLE_SA_DATABASE_URL"] = f"sqlite:///{args.db}"
        start_orders(args.start)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.db) if args.db else Path(tmp) / "demo.sqlite"
        run_demo(f"sqlite:///{path}")
    return 0


def run_demo(url: str) -> None:
    """The demo itself, on the database at ``url``."""
    define()
    print(f"durable-sa's demo on {url}")
    first = create_engine(url)
    engine = Durable(first)
    engine.create_tables()
    order = {"order_id": 1001, "sku": "BOOK-42", "amount": 39.9}
    run_id = engine.start("order", order).run_id
    print(f"started order run {run_id}; running two steps, then the process 'crashes'")
    drain(engine, max=2)
    show(engine, run_id, "after the crash")
    first.dispose()

    print(f"\na new process starts; handler calls so far: {CALLS}")
    engine = Durable(create_engine(url))
    drain(engine)
    show(engine, run_id, "resumed: parked on the approval signal, holding no job")
    accepted = engine.resume(run_id, "warehouse-approval", {"by": "dana"}).accepted
    print(f"\nresume(run {run_id}, 'warehouse-approval') accepted={accepted}")
    drain(engine)
    show(engine, run_id, "completed")
    print(f"each handler ran once: {CALLS}")

    CALLS.clear()
    bad = engine.start("order", {**order, "order_id": 1002, "address": "nowhere"}).run_id
    drain(engine)
    engine.resume(bad, "warehouse-approval", {"by": "dana"})
    drain(engine, now=datetime.now(UTC) + timedelta(minutes=5))  # past the retry backoff
    show(engine, bad, "a shipment that fails is rolled back")
    print(f"calls: {CALLS}")
    final = engine.status(run_id)
    print(f"\nrun {run_id}: {final.status}; tracking {final.results['ship']['tracking']}")


if __name__ == "__main__":
    raise SystemExit(main())
