"""The demo's application: an order workflow and its engine, as a worker process imports it.

``durable-sa worker examples.orders:app`` imports this module, which defines the
workflow, and calls :func:`app` for the engine. The steps pretend to work: ``charge``
takes :data:`CHARGE_SECONDS`, long enough for the demo to kill the worker inside it.

Each handler writes a line when it begins and when it finishes to the file named by
``DURABLE_SA_DEMO_CALLS`` (when set). The demo reads that file to show which process
ran which step, and how many times: the journal only holds what finished, and a
worker's memory dies with it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy import create_engine

from durable_sa import Durable, durable

if TYPE_CHECKING:
    from collections.abc import Callable

    from durable_sa import DurableContext

WORKFLOW: Final = "demo-order"
STEPS: Final = ("reserve", "charge", "ship")
CHARGE_SECONDS: Final = 2.0
"""How long the ``charge`` step works: the demo's kill lands inside it."""

ENV_CALLS: Final = "DURABLE_SA_DEMO_CALLS"
ENV_DATABASE_URL: Final = "DURABLE_SA_DATABASE_URL"
DEFAULT_URL: Final = "sqlite:///durable-sa-demo.sqlite"


def record(ctx: DurableContext, event: str) -> None:
    """Append ``<run> <step> <event> <pid>`` to the calls file, if the demo named one.

    One short ``write`` in append mode per line, so two processes never mix their lines.
    """
    path = os.environ.get(ENV_CALLS)
    if path:
        with Path(path).open("a", encoding="utf-8") as calls:
            calls.write(f"{ctx.run_id} {ctx.step_name} {event} {os.getpid()}\n")


def _recorded(work: Callable[[DurableContext], dict[str, object]]) -> Callable[..., object]:
    """``work`` as a handler that records when it begins and when it finishes."""

    def handler(ctx: DurableContext) -> dict[str, object]:
        record(ctx, "began")
        result = work(ctx)
        record(ctx, "finished")
        return result

    handler.__name__ = handler.__qualname__ = work.__name__
    return handler


def reserve_stock(ctx: DurableContext) -> dict[str, object]:
    """Hold the item in the warehouse."""
    return {"reservation": f"R-{ctx.input['order_id']}", "sku": ctx.input["sku"]}


def charge_card(ctx: DurableContext) -> dict[str, object]:
    """Charge the customer's card (slowly: the demo kills the worker meanwhile)."""
    time.sleep(CHARGE_SECONDS)
    return {"charge": f"ch_{ctx.input['order_id']}", "amount": ctx.input["amount"]}


def ship(ctx: DurableContext) -> dict[str, object]:
    """Hand the parcel to the carrier."""
    return {"tracking": f"TRK{ctx.run_id:05d}", "charge": ctx.results["charge"]["charge"]}


def define() -> None:
    """Register the order workflow in this process: reserve, charge, ship."""
    (
        durable(WORKFLOW)
        .step(STEPS[0], _recorded(reserve_stock))
        .step(STEPS[1], _recorded(charge_card))
        .step(STEPS[2], _recorded(ship))
    )


def app() -> Durable:
    """The engine a worker runs: ``durable-sa worker examples.orders:app``.

    It defines the workflow and binds an engine to ``DURABLE_SA_DATABASE_URL`` (default:
    ``durable-sa-demo.sqlite`` in the current directory), creating the tables if needed.
    """
    define()
    engine = Durable(create_engine(os.environ.get(ENV_DATABASE_URL, DEFAULT_URL)))
    engine.create_tables()
    return engine
