"""``python -m durable_sa.cli``: the ``durable-sa`` command."""

from durable_sa.cli import main

raise SystemExit(main())
