"""Cache backends: where cached results live.

Each backend is a small class with ``get(key) -> value | MISSING``,
``set(key, value)``, ``clear()`` and ``size()``.  The cache layer in
``opero.core.cache`` owns keys, TTL policy, single-flight and failure handling,
so a backend only stores bytes or objects.
"""
