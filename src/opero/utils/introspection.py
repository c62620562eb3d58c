"""Look inside a decorated function: its settings, layers and statistics.

Examples:
    >>> from opero import opero
    >>> from opero.utils.introspection import get_opero_info
    >>> @opero(retries=2, cache=True)
    ... def lookup(key: str) -> str:
    ...     return key.upper()
    >>> info = get_opero_info(lookup)
    >>> info["is_opero_decorated"], info["layers"]
    (True, ['cache', 'retry'])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opero.core.pipeline import Pipeline

__all__ = ["analyze_function", "get_opero_info"]


def _pipeline(func: Callable[..., Any]) -> Pipeline | None:
    pipeline = getattr(func, "__opero__", None)
    return pipeline if isinstance(pipeline, Pipeline) else None


def get_opero_info(func: Callable[..., Any]) -> dict[str, Any]:
    """What opero did to ``func``: configuration, layers (outermost first) and statistics.

    ``cache`` holds what the cache backend reports (backend, entries, and size
    where that is cheap).  Callbacks and cache-key functions appear by name;
    the cache secret and every credential in ``cache_backend_config`` and
    ``rate_limit_backend_config`` (a ``password`` or ``username`` key, a URL's
    ``user:password@`` or ``?password=``) appear as ``"<set>"``, and a given
    client object by its type only.  ``candidates`` lists each ``arg_fallback``
    candidate's health and counts by index (`CandidateStatistics` as a dict; empty
    without a key pool), never its value; ``circuit_breaker`` is the state of the
    function's own breaker (None without one).
    """
    pipeline = _pipeline(func)
    info: dict[str, Any] = {
        "function_name": getattr(func, "__name__", repr(func)),
        "is_opero_decorated": pipeline is not None,
        "is_opmap_decorated": bool(getattr(func, "__opmap__", None)),
        "configuration": {},
        "layers": [],
        "statistics": None,
        "cache": None,
        "candidates": [],
        "circuit_breaker": None,
    }
    if pipeline is None:
        return info
    from opero.core.secrets import masked_settings  # noqa: PLC0415 - only when asked

    info["configuration"] = {
        name: _describe(value) for name, value in masked_settings(pipeline.config).items()
    }
    # A mapped function's own settings (mode, workers, ordered, timeout, ...) as it runs them.
    map_settings = getattr(getattr(func, "__opmap__", None), "settings", None) or {}
    info["configuration"].update(
        {name: _describe(v) for name, v in masked_settings(map_settings).items()}
    )
    info["layers"] = list(pipeline.layers)
    stats = pipeline.statistics()
    # Each candidate by index, never by value (a candidate is often an API key).
    candidates = [candidate.as_dict() for candidate in stats.candidates]
    info["statistics"] = {**stats.as_dict(), "candidates": candidates}
    info["candidates"] = candidates
    info["circuit_breaker"] = stats.breaker
    if pipeline.cache is not None:
        info["cache"] = pipeline.cache.stats()
    return info


def _describe(value: Any) -> Any:
    if callable(value) and not isinstance(value, type):
        return getattr(value, "__qualname__", None) or type(value).__qualname__
    if isinstance(value, tuple):
        return tuple(_describe(v) for v in value)
    if isinstance(value, type):
        return value.__qualname__
    return value


def analyze_function(func: Callable[..., Any]) -> str:
    """A short human-readable report of ``func``'s opero settings and statistics."""
    info = get_opero_info(func)
    name = info["function_name"]
    if not info["is_opero_decorated"]:
        return f"Function '{name}' is not decorated with Opero."
    config = info["configuration"]
    lines = [f"Analysis of '{name}':", "  ✓ @opero decorator applied"]
    if info["is_opmap_decorated"] and "mode" in config:
        lines.append(
            f"    - Map: mode {config['mode']}, {config['workers'] or 'automatic'} workers, "
            f"chunk size {config['chunk_size'] or 'automatic'}, "
            f"timeout {config['timeout'] if config['timeout'] is not None else 'none'}, "
            f"{'ordered' if config['ordered'] else 'completion order'}"
        )
    lines.append(f"    - Retries: {config['retries']} (up to {config['retries'] + 1} attempts)")
    if config["wait"] is not None:
        lines.append(f"    - Backoff: tenacity strategy {config['wait']}")
    else:
        lines.append(
            f"    - Backoff: {config['backoff_factor']}x exponential, "
            f"{config['min_delay']}s to {config['max_delay']}s"
            + (", with jitter" if config["jitter"] else "")
        )
    if config["cache"]:
        ttl = config["cache_ttl"] if config["cache_ttl"] is not None else "no limit"
        lines.append(
            f"    - Caching: {config['cache_backend']} backend, TTL: {ttl}, "
            f"namespace: {config['cache_namespace']}"
        )
    if config["rate_limit"] is not None:
        lines.append(f"    - Rate limit: {config['rate_limit']}/sec ({config['rate_limit_scope']})")
    if config["arg_fallback"] is not None:
        lines.append(f"    - Fallback parameter: {config['arg_fallback']}")
    lines.append("  Resilience layers (outer to inner):")
    lines.extend(f"    - {layer}" for layer in info["layers"])
    stats = info["statistics"]
    lines.append(
        "  Statistics: "
        f"{stats['calls']} calls, {stats['attempts']} attempts, {stats['retries']} retries, "
        f"{stats['fallbacks']} fallbacks, {stats['cache_hits']} cache hits, "
        f"{stats['failures']} failures, {stats['waited']:.3f}s waited"
    )
    if info["circuit_breaker"] is not None:
        lines.append(f"  Circuit breaker: {info['circuit_breaker']}")
    lines.extend(
        f"  Candidate {c['index']}: {c['state']}, {c['calls']} calls, "
        f"{c['failures']} failures, {c['rests']} rests"
        for c in info["candidates"]
    )
    return "\n".join(lines)
