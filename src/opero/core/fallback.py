"""Parameter fallback: call again with the next value of a list argument.

``arg_fallback="api_key"`` names a parameter whose value is a list or tuple of
candidates.  Each attempt walks the candidates in order and calls the function
with that parameter replaced by a one-element list holding the current
candidate, so ``api_key[0]`` inside the function is the key in use.

Where the parameter sits (position, keyword-only, default) is worked out once
at decoration time; per call only a tuple slice or a dict copy is made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, final

from opero.core import validate
from opero.core.frozen import Frozen
from opero.exceptions import ConfigurationError

__all__ = ["FallbackPolicy", "check_settings"]


def check_settings(name: str | None, delay: float) -> None:
    """Check ``arg_fallback`` (None or a name) and ``fallback_delay`` by value alone."""
    if name is not None and (not isinstance(name, str) or not name):
        msg = f"arg_fallback must be the name of a parameter (a str), got {validate.show(name)}"
        raise ConfigurationError(msg)
    validate.number("fallback_delay", delay)


@final
class FallbackPolicy(Frozen):
    """Where the fallback parameter is and how to substitute a candidate.

    Build it with :meth:`for_function`, which validates the name.
    """

    __slots__ = ("default", "delay", "leading_defaults", "name", "position", "positional_only")

    #: The parameter's name.
    name: str
    #: Its index among positional parameters, or ``None`` if keyword-only.
    position: int | None
    #: Defaults of the positional parameters before it (to pad a short call).
    leading_defaults: tuple[Any, ...]
    #: Whether it is positional-only (cannot be passed by keyword).
    positional_only: bool
    #: Its default value, or ``inspect.Parameter.empty``.
    default: Any
    #: Seconds to pause between two candidates of one attempt.
    delay: float

    def __init__(
        self,
        *,
        name: str,
        position: int | None,
        leading_defaults: tuple[Any, ...],
        positional_only: bool,
        default: Any,
        delay: float = 0.0,
    ) -> None:
        self._init(
            name=name,
            position=position,
            leading_defaults=leading_defaults,
            positional_only=positional_only,
            default=default,
            delay=delay,
        )

    @classmethod
    def for_function(
        cls, func: Callable[..., Any], name: str, delay: float = 0.0
    ) -> FallbackPolicy:
        """Locate ``name`` in ``func``'s signature or raise ConfigurationError."""
        import inspect  # noqa: PLC0415 - decoration time only; keeps `import opero` light

        check_settings(name, delay)
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError) as exc:  # builtins without a signature
            msg = f"arg_fallback={name!r} needs a function with an inspectable signature"
            raise ConfigurationError(msg) from exc
        params = list(signature.parameters.values())
        names = [p.name for p in params]
        if name not in names:
            accepted = ", ".join(names) or "(none)"
            msg = (
                f"arg_fallback={name!r} is not a parameter of "
                f"{getattr(func, '__qualname__', func)!r}; its parameters are: {accepted}"
            )
            raise ConfigurationError(msg)
        param = signature.parameters[name]
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            msg = f"arg_fallback={name!r} must name a regular parameter, not *{name} or **{name}"
            raise ConfigurationError(msg)
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        position = next((i for i, p in enumerate(positional) if p.name == name), None)
        leading = tuple(p.default for p in positional[: position or 0])
        return cls(
            name=name,
            position=position,
            leading_defaults=leading,
            positional_only=param.kind is param.POSITIONAL_ONLY,
            default=param.default,
            delay=validate.number("fallback_delay", delay),
        )

    def candidates(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Sequence[Any] | None:
        """The candidates of this call, or ``None`` when the value is not a list or tuple.

        A value that is not a list or tuple (a string, ``None``, a scalar) is
        passed through unchanged: there is nothing to fall back to.
        """
        if self.position is not None and len(args) > self.position:
            value = args[self.position]
        elif self.name in kwargs:
            value = kwargs[self.name]
        else:
            value = self.default
        if not isinstance(value, (list, tuple)):
            return None
        if not value:
            msg = (
                f"arg_fallback parameter {self.name!r} got an empty list: "
                "give at least one candidate"
            )
            raise ConfigurationError(msg)
        return value

    def substitute(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], candidate: Any
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The call's arguments with the fallback parameter set to ``[candidate]``."""
        wrapped = [candidate]
        position = self.position
        if position is not None and len(args) > position:
            return (*args[:position], wrapped, *args[position + 1 :]), kwargs
        if self.positional_only and position is not None:
            # Not given and cannot go by keyword: pad with the defaults before it.
            padded = args + self.leading_defaults[len(args) :]
            return (*padded, wrapped), kwargs
        return args, {**kwargs, self.name: wrapped}
