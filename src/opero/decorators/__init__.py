"""The public decorators: ``@opero`` (one call) and, later, ``@opmap`` (many items)."""

from opero.decorators.opero import OperoFunction, opero
from opero.decorators.opmap import opmap

__all__ = ["OperoFunction", "opero", "opmap"]
