"""What long-running processes share: LISTEN, wake-ups, stop signals and presence.

The worker, the relay and ``wait()`` are built from these; none of them imports another.
"""
