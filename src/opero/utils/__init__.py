"""Helpers: logging set-up and introspection of decorated functions."""

from opero.utils.logging import configure_logging

__all__ = ["configure_logging"]
