"""Where jobs go: the :class:`QueueBackend` protocol and the built-in jobs-table backend."""
