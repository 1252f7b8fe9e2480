"""Throwaway servers for tests: a PostgreSQL cluster and a Redis server, 127.0.0.1 only.

:class:`PostgresServer` runs ``initdb`` into a fresh temporary directory, starts the
server with ``pg_ctl`` on a free port of 127.0.0.1, and on :meth:`PostgresServer.stop`
shuts it down and deletes the directory. :class:`RedisServer` does the same with
``redis-server``, run as a child process of the test. Nothing survives a run: no system
cluster, service, configuration or default port is used or changed.

The pytest plugin (:mod:`durable_sa.testing.pytest_plugin`) starts them on first use
through its ``durable_postgres_*`` and ``durable_redis_*`` fixtures; use the classes
directly outside pytest (benchmarks, scripts).

PostgreSQL:

* Binaries come from the newest ``/usr/lib/postgresql/<version>/bin`` (Debian's layout),
  else from ``PATH``. A missing server is an error (:class:`PostgresNotFoundError`),
  never a skipped test.
* ``initdb`` refuses to run as root. As root, the server runs as the unprivileged system
  user :data:`SERVER_OS_USER` (created on first use) and owns the temporary directory.
* The database superuser is ``postgres``; authentication is ``trust`` for local and
  loopback connections, the server listens on 127.0.0.1 only, and its Unix socket lives
  inside the temporary directory. Durability is switched off for speed (``fsync``,
  ``synchronous_commit``, ``full_page_writes``) unless ``durable=True``: data are
  thrown away anyway.
* If the environment variable :data:`POSTGRES_URL_ENV` holds a URL of an existing server
  (database ``postgres``, e.g. ``postgresql://user:pw@127.0.0.1:5432/postgres``), that
  server is used instead and :meth:`PostgresServer.start`/``stop`` do nothing to it.

Redis:

* The binary is ``redis-server`` from ``PATH``, else ``/usr/bin/redis-server`` (Debian's
  package); a missing one is an error (:class:`RedisNotFoundError`).
* Redis runs as root without complaint, so no OS user is switched to.
* The server listens on 127.0.0.1 only (so ``protected-mode`` may stay on) and keeps its
  data in the append-only file with ``appendfsync always`` and no RDB snapshots: every
  write acknowledged to a client is on disk, so :meth:`RedisServer.restart`, even with
  ``kill=True`` (SIGKILL, as in a crash), loses none.
* Readiness is checked with a raw-socket RESP ``PING`` (so this module needs no Redis
  client library), plus ``INFO server`` to make sure the server that answers is ours and
  not someone else's that took the port first.
* If the environment variable :data:`REDIS_URL_ENV` holds a URL of an existing server
  (e.g. ``redis://127.0.0.1:6379/0``), that server is used instead:
  :meth:`RedisServer.start` and ``stop`` do nothing to it and ``restart`` is refused.

Typical use::

    with PostgresServer() as server:
        server.create_database("t_1")
        engine = sqlalchemy.create_engine(server.url("t_1"))
        ...
        server.drop_database("t_1")

    with RedisServer() as broker:
        ...
        broker.restart(kill=True)  # a broker crash; acknowledged writes survive
"""

from durable_sa.testing.servers.common import HOST, sigterm_as_keyboard_interrupt
from durable_sa.testing.servers.postgres import POSTGRES_URL_ENV, PostgresServer
from durable_sa.testing.servers.postgres_install import (
    SERVER_OS_USER,
    PostgresBinaries,
    PostgresNotFoundError,
    PostgresServerError,
    find_postgres_binaries,
)
from durable_sa.testing.servers.redis import (
    REDIS_URL_ENV,
    RedisNotFoundError,
    RedisServer,
    RedisServerError,
    find_redis_server,
)

__all__ = [
    "HOST",
    "POSTGRES_URL_ENV",
    "REDIS_URL_ENV",
    "SERVER_OS_USER",
    "PostgresBinaries",
    "PostgresNotFoundError",
    "PostgresServer",
    "PostgresServerError",
    "RedisNotFoundError",
    "RedisServer",
    "RedisServerError",
    "find_postgres_binaries",
    "find_redis_server",
    "sigterm_as_keyboard_interrupt",
]
