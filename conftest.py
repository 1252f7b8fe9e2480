"""The repository's root conftest: fixtures shared by ``tests/`` and ``backends/*/tests``.

Fixture modules are plugins so that one session starts one PostgreSQL server (and one
Redis server) however many test trees use them.
"""

pytest_plugins = ["tests.support.databases", "tests.support.brokers"]
