"""The ``opero`` command: ``opero demo`` runs a short tour of what the decorator does."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


def _demo() -> int:
    """Retries, key fallback, a cache hit and a rate limit, each shown happening."""
    from opero import AllFailedError, opero  # noqa: PLC0415 - keep `opero --help` instant

    print("opero demo: one decorator, four layers (cache -> rate limit -> retry -> fallback)\n")

    # 1. Retries with backoff.
    failures_left = [2]

    def report_retry(error: BaseException, attempt: int) -> None:
        print(f"   retry {attempt} after {type(error).__name__}: {error}")

    @opero(retries=3, min_delay=0.05, backoff_factor=2, on_retry=report_retry)
    def flaky_fetch(item: str) -> str:
        if failures_left[0] > 0:
            failures_left[0] -= 1
            raise ConnectionError("the server hung up")
        return f"{item}: fetched"

    print("1. A flaky call that fails twice, with retries=3:")
    print(f"   -> {flaky_fetch('report')}")
    stats = flaky_fetch.statistics()
    print(f"   {stats.attempts} attempts, {stats.retries} retries, waited {stats.waited:.2f}s\n")

    # 2. Parameter fallback: the same call with the next API key.
    @opero(retries=0, arg_fallback="api_key")
    def call_api(query: str, api_key: list[str]) -> str:
        if api_key[0].startswith("revoked"):
            raise PermissionError("key rejected")
        return f"{query}: answered"

    keys = ["revoked-primary", "backup-key"]
    print("2. Key fallback: the first API key is revoked, the second works:")
    print(f"   -> {call_api('weather', api_key=keys)}")
    print(
        f"   fallbacks used: {call_api.statistics().fallbacks} (keys are never printed or logged)\n"
    )

    # 3. Cache: the second call never runs the function.
    runs = [0]

    @opero(cache=True, cache_ttl=60)
    def slow_square(x: int) -> int:
        runs[0] += 1
        time.sleep(0.1)
        return x * x

    print("3. Cache: the same call twice:")
    for _ in range(2):
        start = time.perf_counter()
        value = slow_square(12)
        print(f"   slow_square(12) = {value} in {time.perf_counter() - start:.3f}s")
    hits = slow_square.statistics().cache_hits
    print(f"   the function ran {runs[0]} time(s); cache hits: {hits}\n")

    # 4. Rate limit: calls spaced evenly.
    @opero(rate_limit=10)
    def ping(n: int) -> int:
        return n

    print("4. Rate limit of 10 calls/s, 6 calls in a loop:")
    start = time.perf_counter()
    stamps = []
    for n in range(6):
        ping(n)
        stamps.append(time.perf_counter() - start)
    print("   started at " + ", ".join(f"{s:.2f}s" for s in stamps) + "\n")

    # 5. When everything fails.
    @opero(retries=1, min_delay=0.01, arg_fallback="region")
    def deploy(app: str, region: list[str]) -> str:
        raise TimeoutError("region unavailable")

    print("5. Everything fails (2 attempts x 2 regions):")
    try:
        deploy("shop", region=["eu", "us"])
    except AllFailedError as error:
        print(f"   AllFailedError with {error.attempt_count} errors:")
        for line in str(error).splitlines()[1:]:
            print(f"   {line}")
    print("\nNext: read the README's quick start, or run the tests (see README).")
    return 0


def _store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=("disk", "sqlite", "redis"),
        default="disk",
        help="which persistent cache (default: disk)",
    )
    parser.add_argument("--namespace", help="only this cache_namespace")
    parser.add_argument("--directory", help="disk/sqlite: the cache directory")
    parser.add_argument("--path", help="sqlite: the database file")
    parser.add_argument("--url", help="redis: server URL, e.g. redis://localhost:6379/0")


def _open(args: argparse.Namespace) -> Any:
    from opero.core.cache import open_backend  # noqa: PLC0415

    config = {
        name: getattr(args, name)
        for name in ("directory", "path", "url")
        if getattr(args, name) is not None
    }
    return open_backend(args.backend, config)


def _cache_command(args: argparse.Namespace) -> int:
    from opero.core.backends.base import namespace_prefix  # noqa: PLC0415
    from opero.exceptions import ConfigurationError  # noqa: PLC0415

    try:
        store = _open(args)
    except ConfigurationError as exc:
        print(f"opero: {exc}", file=sys.stderr)
        return 2
    prefix = namespace_prefix(args.namespace)
    scope = f"namespace {args.namespace!r}" if args.namespace else "all namespaces"
    try:
        if args.cache_command == "stats":
            stats = store.stats(prefix)
            print(f"backend:    {stats['backend']}")
            print(f"location:   {stats['location']}")
            print(f"entries:    {stats['entries']}")
            if stats.get("bytes") is not None:
                print(f"size:       {stats['bytes']} bytes")
            print("namespaces:" + ("" if stats["namespaces"] else " (none)"))
            for name, count in stats["namespaces"].items():
                print(f"  {name}: {count}")
            return 0
        if not args.yes:
            if not sys.stdin.isatty():
                print(
                    "opero: refusing to clear without --yes (no terminal to ask)", file=sys.stderr
                )
                return 1
            answer = input(f"Clear {scope} in {store.kind} cache at {store.location}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing cleared")
                return 1
        removed = store.clear(prefix)
        print(f"cleared {removed} entries ({scope}) from {store.kind} cache at {store.location}")
        return 0
    except Exception as exc:  # a CLI reports, it does not trace back
        print(
            f"opero: {store.kind} cache at {store.location} failed: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
    finally:
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``opero`` console script."""
    parser = argparse.ArgumentParser(
        prog="opero", description="Resilient and parallel functions with one decorator."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("demo", help="run a short tour: retries, fallback, cache, rate limit")
    commands.add_parser("version", help="print the installed version")
    cache = commands.add_parser("cache", help="inspect or clear a persistent cache")
    cache_commands = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    stats = cache_commands.add_parser("stats", help="entries, size and namespaces of a cache")
    _store_args(stats)
    clear = cache_commands.add_parser("clear", help="delete cached entries (asks first)")
    _store_args(clear)
    clear.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo()
    if args.command == "cache":
        return _cache_command(args)
    if args.command == "version":
        import opero  # noqa: PLC0415

        print(opero.__version__)
        return 0
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
