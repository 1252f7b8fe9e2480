"""Example applications built on durable-sa; not part of the installed package.

Run them from a checkout: ``python -m examples.demo`` (or ``make demo``).
"""
