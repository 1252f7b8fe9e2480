"""The database fixtures themselves work: fresh databases on both backends."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

if TYPE_CHECKING:
    from durable_sa.testing.servers import PostgresServer


def test_fresh_database_roundtrip(sa_engine: sa.Engine) -> None:
    assert sa.inspect(sa_engine).get_table_names() == []  # a fresh, empty database

    metadata = sa.MetaData()
    items = sa.Table(
        "items",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50), nullable=False),
    )
    metadata.create_all(sa_engine)
    with sa_engine.begin() as conn:
        conn.execute(items.insert(), [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}])
    with sa_engine.connect() as conn:
        rows = conn.execute(sa.select(items.c.id, items.c.name).order_by(items.c.id)).all()

    assert [tuple(row) for row in rows] == [(1, "one"), (2, "two")]


def test_postgres_server_settings(
    pg_engine: sa.Engine, durable_postgres_server: PostgresServer
) -> None:
    with pg_engine.connect() as conn:
        version = conn.execute(sa.text("SHOW server_version_num")).scalar_one()
        listen = conn.execute(sa.text("SHOW listen_addresses")).scalar_one()

    assert int(version) >= 150000, f"PostgreSQL >= 15 required, got {version}"
    if durable_postgres_server.is_external:
        pytest.skip("listen_addresses is the external server's own business")
    assert listen == "127.0.0.1"


def test_drop_database_ends_open_sessions(durable_postgres_server: PostgresServer) -> None:
    name = f"t_{uuid.uuid4().hex}"
    durable_postgres_server.create_database(name)
    engine = sa.create_engine(durable_postgres_server.url(name))
    conn = engine.connect()  # an open session that the drop has to end
    try:
        conn.execute(sa.text("SELECT 1"))
        durable_postgres_server.drop_database(name)
        with durable_postgres_server.connect() as admin:
            found = admin.execute(
                "SELECT count(*) FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
        assert found == (0,)
    finally:
        conn.invalidate()  # its server session is gone: close without a rollback
        conn.close()
        engine.dispose()
        durable_postgres_server.drop_database(name)


def test_a_database_can_be_created_as_a_copy_of_a_template(
    durable_postgres_server: PostgresServer,
) -> None:
    template, copy = f"t_{uuid.uuid4().hex}", f"t_{uuid.uuid4().hex}"
    durable_postgres_server.create_database(template)
    try:
        source = sa.create_engine(durable_postgres_server.url(template))
        with source.begin() as conn:
            conn.execute(sa.text("CREATE TABLE prepared (id INTEGER PRIMARY KEY)"))
            conn.execute(sa.text("INSERT INTO prepared VALUES (7)"))
        source.dispose()  # nobody may be connected to a template while it is copied
        durable_postgres_server.create_database(copy, template=template)
        target = sa.create_engine(durable_postgres_server.url(copy))
        with target.begin() as conn:
            assert conn.execute(sa.text("SELECT id FROM prepared")).scalars().all() == [7]
            conn.execute(sa.text("DELETE FROM prepared"))
        target.dispose()
        with sa.create_engine(durable_postgres_server.url(template)).connect() as conn:
            assert conn.execute(sa.text("SELECT id FROM prepared")).scalars().all() == [7]
    finally:
        durable_postgres_server.drop_database(copy)
        durable_postgres_server.drop_database(template)
