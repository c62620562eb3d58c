"""Pools that run per-item calls for ``@opmap`` (thread, process, async)."""
