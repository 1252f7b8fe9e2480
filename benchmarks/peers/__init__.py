"""Peer benchmarks: the same 3-step workflow measured in competing libraries."""
