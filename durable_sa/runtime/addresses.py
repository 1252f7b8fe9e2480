"""The address durable-sa's servers bind unless told another: loopback, this machine only.

The metrics servers (``serve_metrics``, ``durable-sa metrics``, ``worker
--metrics-port``) and the dashboard answer whoever can connect, so by default only this
machine can; binding another host is the operator's explicit choice (``--host``).
"""

from __future__ import annotations

from typing import Final

LOOPBACK: Final = "127.0.0.1"
