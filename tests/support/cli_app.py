"""A small application for the CLI tests: ``durable-sa worker tests.support.cli_app:engine``.

Importing it registers the workflows; the engine's database comes from
``DURABLE_SA_DATABASE_URL`` (an in-memory SQLite database when it is unset, so the
module can be imported anywhere).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine

from durable_sa import Durable, durable

if TYPE_CHECKING:
    from durable_sa import DurableContext


def fetch(ctx: DurableContext) -> dict[str, Any]:
    time.sleep(float(ctx.input.get("pause", 0)))
    return {"n": ctx.input["n"]}


def double(ctx: DurableContext) -> int:
    return int(ctx.results["fetch"]["n"]) * 2


def report(ctx: DurableContext) -> str:
    return f"{ctx.input['n']} doubled is {ctx.results['double']}"


def ship(ctx: DurableContext) -> dict[str, Any]:
    return {"approved_by": ctx.results["approval"]["by"]}


def define() -> None:
    """Register the workflows (again: each test's registry is cleaned up after it)."""
    durable("cli-three").step("fetch", fetch).step("double", double).step("report", report)
    durable("cli-signal").wait_for_signal("approval", "approve").step("ship", ship)


define()

_URL = os.environ.get("DURABLE_SA_DATABASE_URL", "sqlite://")
engine = Durable(create_engine(_URL))


def make_engine() -> Durable:
    """The engine, from a zero-argument factory (APP may name either)."""
    return engine


not_an_engine = 42
