"""The pure core: decisions over frozen values, no clock, no I/O, no database.

Nothing in this package imports sqlalchemy, psycopg or asyncio. Everything here can be
replayed by hypothesis with a fixed ``now`` and jitter.
"""
