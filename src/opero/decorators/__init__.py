"""The public decorators: ``@opero`` (one call) and, later, ``@opmap`` (many items)."""

from opero.decorators.opero import OperoFunction, opero

__all__ = ["OperoFunction", "opero"]
