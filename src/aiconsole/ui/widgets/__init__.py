"""Reusable widgets. Each renders immutable domain snapshots and does no I/O."""
