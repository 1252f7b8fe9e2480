"""The commit floor: the fewest commits a durable 3-step workflow needs, in raw drivers.

Per workflow: one transaction that starts it (the run row), then one transaction per
step that journals the step's result and moves the run on (the last one completes it).
One connection, no framework, no queue, no claiming: the physical limit every other
figure is divided by. Runs are started up front, then driven in order, as in scenario 2.

PostgreSQL uses psycopg 3 with the server's default durability; SQLite uses the standard
library driver with the pragmas the engine sets (WAL, ``synchronous = NORMAL``).

Run as ``python -m benchmarks.floor --url URL --n N``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from typing import Final

import psycopg
from psycopg.types.json import Jsonb

STEPS: Final = 3

_PG_SCHEMA = """
CREATE TABLE floor_runs (
    id bigserial PRIMARY KEY, status text NOT NULL, current_step int NOT NULL,
    state jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE floor_journal (
    run_id bigint NOT NULL REFERENCES floor_runs(id), step_id text NOT NULL,
    result jsonb, completed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, step_id));
"""

_SQLITE_SCHEMA = """
CREATE TABLE floor_runs (
    id INTEGER PRIMARY KEY, status TEXT NOT NULL, current_step INT NOT NULL,
    state TEXT NOT NULL, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE floor_journal (
    run_id INTEGER NOT NULL REFERENCES floor_runs(id), step_id TEXT NOT NULL,
    result TEXT, completed_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (run_id, step_id));
"""


def postgres(url: str, n: int) -> dict[str, float]:
    """Start ``n`` runs, then drive each through its steps; seconds for each phase."""
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(_PG_SCHEMA)
        started = time.perf_counter()
        ids = [
            conn.execute(
                "INSERT INTO floor_runs (status, current_step, state) "
                "VALUES ('running', 0, %s) RETURNING id",
                (Jsonb({}),),
            ).fetchone()[0]  # type: ignore[index]
            for _ in range(n)
        ]
        start_s = time.perf_counter() - started
        started = time.perf_counter()
        for run_id in ids:
            for step in range(STEPS):
                last = step == STEPS - 1
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO floor_journal (run_id, step_id, result) VALUES (%s, %s, %s)",
                        (run_id, f"s{step}", Jsonb(step)),
                    )
                    conn.execute(
                        "UPDATE floor_runs SET current_step = %s, status = %s, "
                        "state = state || %s, updated_at = now() WHERE id = %s",
                        (
                            step + 1,
                            "completed" if last else "running",
                            Jsonb({f"s{step}": step}),
                            run_id,
                        ),
                    )
        return {"start_s": start_s, "drain_s": time.perf_counter() - started}


def sqlite(path: str, n: int) -> dict[str, float]:
    """The same on a SQLite file in WAL mode."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.executescript(_SQLITE_SCHEMA)
    started = time.perf_counter()
    ids = [
        int(
            conn.execute(
                "INSERT INTO floor_runs (status, current_step, state) VALUES ('running', 0, '{}')"
            ).lastrowid
            or 0
        )
        for _ in range(n)
    ]
    start_s = time.perf_counter() - started
    started = time.perf_counter()
    for run_id in ids:
        for step in range(STEPS):
            last = step == STEPS - 1
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO floor_journal (run_id, step_id, result) VALUES (?, ?, ?)",
                (run_id, f"s{step}", json.dumps(step)),
            )
            conn.execute(
                "UPDATE floor_runs SET current_step = ?, status = ?, "
                "state = json_patch(state, ?), updated_at = CURRENT_TIMESTAMP WHERE id = ?",
                (
                    step + 1,
                    "completed" if last else "running",
                    json.dumps({f"s{step}": step}),
                    run_id,
                ),
            )
            conn.execute("COMMIT")
    drain_s = time.perf_counter() - started
    conn.close()
    return {"start_s": start_s, "drain_s": drain_s}


def main(argv: list[str] | None = None) -> None:
    """Measure the floor on ``--url`` (``postgresql://...`` or ``sqlite:///path``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args(argv)
    if args.url.startswith("sqlite"):
        phases = sqlite(args.url.split("///", 1)[1], args.n)
    else:
        phases = postgres(args.url, args.n)
    total = phases["start_s"] + phases["drain_s"]
    out = {
        "system": "floor",
        "n": args.n,
        **phases,
        "wf_per_s": args.n / total,
        "drain_wf_per_s": args.n / phases["drain_s"],
    }
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
