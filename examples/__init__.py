"""Example applications built on durable-sa; not part of the installed package.

Run them from a checkout: ``python -m examples.demo`` (or ``make demo``). The demo's
application, :mod:`examples.orders`, is what its worker processes import.
"""
