"""What long-running processes share: a lifecycle, LISTEN, wake-ups, stop signals, presence.

The worker and the relay are both a :class:`~durable_sa.runtime.service.Service`; they
and ``wait()`` are built from these parts, and none of them imports another. Servers
(metrics, the dashboard) bind :data:`~durable_sa.runtime.addresses.LOOPBACK` by default.
"""
