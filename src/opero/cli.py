"""The ``opero`` command: ``opero demo`` tours the decorators, ``opero cache`` manages caches."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    """The guided tour lives in ``opero.demo``, imported only when asked for."""
    from opero.demo import run_tour  # noqa: PLC0415 - keep `opero --help` instant

    return run_tour(quick=args.quick)


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


def _error(args: argparse.Namespace, text: str) -> None:
    """Print ``text`` to stderr with the credentials of ``--url`` masked.

    A server's error may quote the URL it was given; the password in
    ``redis://user:password@host`` must not reach a terminal or a CI log.
    """
    from opero.core.secrets import scrub, url_secrets  # noqa: PLC0415

    print(scrub(text, url_secrets(args.url or "")), file=sys.stderr)


def _cache_command(args: argparse.Namespace) -> int:
    from opero.core.backends.base import namespace_prefix  # noqa: PLC0415
    from opero.exceptions import ConfigurationError  # noqa: PLC0415

    try:
        store = _open(args)
    except ConfigurationError as exc:
        _error(args, f"opero: {exc}")
        return 2
    except Exception as exc:  # e.g. a directory that cannot be created
        _error(args, f"opero: cannot open the {args.backend} cache: {type(exc).__name__}: {exc}")
        return 1
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
        _error(
            args,
            f"opero: {store.kind} cache at {store.location} failed: {type(exc).__name__}: {exc}",
        )
        return 1
    finally:
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``opero`` console script."""
    from opero import __version__  # noqa: PLC0415 - a constant: costs nothing

    parser = argparse.ArgumentParser(
        prog="opero", description="Resilient and parallel functions with one decorator."
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="print the version"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="a guided tour against a flaky local HTTP service (under a minute)",
        description="Starts a flaky HTTP service on 127.0.0.1 and shows retries, key "
        "fallback, cache hits, a rate limit and @opmap in thread and async mode.",
    )
    demo.add_argument(
        "--quick", action="store_true", help="fewer URLs and shorter waits (about 5 seconds)"
    )
    commands.add_parser("version", help="print the installed version alone (for scripts)")
    cache = commands.add_parser("cache", help="inspect or clear a persistent cache")
    cache_commands = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    stats = cache_commands.add_parser("stats", help="entries, size and namespaces of a cache")
    _store_args(stats)
    clear = cache_commands.add_parser("clear", help="delete cached entries (asks first)")
    _store_args(clear)
    clear.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    if args.command == "cache":
        return _cache_command(args)
    if args.command == "version":
        print(__version__)
        return 0
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
