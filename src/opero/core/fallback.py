"""Parameter fallback: call again with the next value of a list argument.

``arg_fallback="api_key"`` names a parameter whose value is a list or tuple of
candidates.  Each attempt walks the candidates in order and calls the function
with that parameter replaced by a one-element list holding the current
candidate, so ``api_key[0]`` inside the function is the key in use.

Where the parameter sits (position, keyword-only, default) is worked out once
at decoration time, into the two functions every call uses (``candidates`` and
``substitute``); per call only a tuple or a one-key dict is made.  A parameter
left to its default right after the given positional arguments is passed by
position: the same to the function, and cheaper than a keyword.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, final

from opero.core import validate
from opero.core.frozen import Frozen
from opero.exceptions import ConfigurationError

__all__ = ["FallbackPolicy", "Lead", "Locate", "Put", "check_settings"]

#: ``candidates(args, kwargs)``: a call's candidates, or None (see FallbackPolicy.candidates).
Locate = Callable[[tuple[Any, ...], dict[str, Any]], Sequence[Any] | None]
#: ``substitute(args, kwargs, candidate)``: the call's arguments with ``[candidate]`` in place.
Put = Callable[[tuple[Any, ...], dict[str, Any], Any], tuple[tuple[Any, ...], dict[str, Any]]]
#: ``lead(args, kwargs)``: ``(candidates, args, kwargs)`` with the first candidate in place,
#: or ``(None, args, kwargs)`` unchanged when there is no list (see FallbackPolicy.lead).
Lead = Callable[
    [tuple[Any, ...], dict[str, Any]], tuple[Sequence[Any] | None, tuple[Any, ...], dict[str, Any]]
]


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

    __slots__ = (
        "_lead",
        "_locate",
        "_put",
        "default",
        "delay",
        "leading_defaults",
        "name",
        "position",
        "positional_only",
    )

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
    _lead: Lead
    _locate: Locate
    _put: Put

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
        locate = _locator(name, position, default)
        put = _putter(name, position, leading_defaults, positional_only)
        self._init(
            name=name,
            position=position,
            leading_defaults=leading_defaults,
            positional_only=positional_only,
            default=default,
            delay=delay,
            _lead=_leader(
                name, position, default, positional_only=positional_only, locate=locate, put=put
            ),
            _locate=locate,
            _put=put,
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

    @property
    def candidates(self) -> Locate:
        """``candidates(args, kwargs)``: the call's candidates, or ``None`` when the value is
        not a list or tuple (a string, ``None``, a scalar: nothing to fall back to, passed
        through unchanged); an empty list raises ConfigurationError.

        A function built for where the parameter sits (see :func:`_locator`): the hot
        paths bind it once, at decoration time.
        """
        return self._locate

    @property
    def substitute(self) -> Put:
        """``substitute(args, kwargs, candidate)``: the call's arguments with the fallback
        parameter set to ``[candidate]`` (built like :attr:`candidates`, see :func:`_putter`)."""
        return self._put

    @property
    def lead(self) -> Lead:
        """``lead(args, kwargs)``: :attr:`candidates` and :attr:`substitute` of the first
        one in one call, ``(candidates, args, kwargs)``, or ``(None, args, kwargs)``
        unchanged when there is no list: what every first attempt (and a key pool's
        pick of its first candidate) needs."""
        return self._lead

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its fields: the bound functions are made again, not pickled.
        return (_rebuild, (self.as_dict(),))


def _rebuild(fields: dict[str, Any]) -> FallbackPolicy:
    return FallbackPolicy(**fields)


def _unlisted(name: str, value: Any) -> Sequence[Any] | None:
    # The rare values: not a list or tuple (None: passed through), or an empty one.
    if not isinstance(value, (list, tuple)):
        return None
    msg = f"arg_fallback parameter {name!r} got an empty list: give at least one candidate"
    raise ConfigurationError(msg)


#: The position of a keyword-only parameter: no call has that many arguments.
_NOWHERE = sys.maxsize


# The two functions below are the hand-optimised hot path of every arg_fallback call (the
# first attempt and the key pool's pick both call them), so each is built for where the
# parameter sits and keeps its settings in closure cells.  Measured (timeit, CPU time,
# best of 15), candidates() + substitute() as methods reading the policy's attributes,
# then as these closures: 0.51 -> 0.32 us with the list left to its default, 0.49 ->
# 0.36 us given by position, 0.53 -> 0.49 us given by keyword; whole calls in
# bench/key_pools.py: @opero(arg_fallback) 0.96 -> 0.63 us over a plain call.
def _locator(name: str, position: int | None, default: Any) -> Locate:
    # The default's type is fixed at decoration time; its emptiness is read per call (a
    # module-level list may be emptied later).  ``value.__class__ is list`` first: the
    # common case in one identity check (isinstance costs 3x as much).
    listed_default = isinstance(default, (list, tuple))
    cut = _NOWHERE if position is None else position

    def candidates(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Sequence[Any] | None:
        if len(args) > cut:
            value = args[cut]
        elif kwargs and name in kwargs:
            value = kwargs[name]
        elif listed_default and default:
            return default  # type: ignore[no-any-return]
        else:
            value = default
        if (value.__class__ is list or isinstance(value, (list, tuple))) and value:
            return value
        return _unlisted(name, value)

    return candidates


def _putter(
    name: str, position: int | None, leading: tuple[Any, ...], positional_only: bool
) -> Put:
    # A given positional value is replaced through a list (list, store, tuple: half the
    # cost of slicing and concatenating); a keyword builds one dict, without the
    # ``{**kwargs}`` merge when the call has no keywords (0.09 us against 0.2 us).
    cut = _NOWHERE if position is None else position
    padded = positional_only and position is not None

    def substitute(
        args: tuple[Any, ...], kwargs: dict[str, Any], candidate: Any
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        given = len(args)
        if given > cut:
            replaced = list(args)
            replaced[cut] = [candidate]
            return tuple(replaced), kwargs
        if given == cut and not (kwargs and name in kwargs):
            # Left to its default, right after the given ones: it goes by position, the
            # same to the function, and the call needs no keywords (0.2 us less a call);
            # concatenated: 0.02 us less than ``(*args, [candidate])``, which builds a list.
            return args + ([candidate],), kwargs  # noqa: RUF005
        if padded:  # not given and cannot go by keyword: pad with the defaults before it
            return (*args, *leading[given:], [candidate]), kwargs
        return args, ({**kwargs, name: [candidate]} if kwargs else {name: [candidate]})

    return substitute


def _leader(
    name: str,
    position: int | None,
    default: Any,
    *,
    positional_only: bool,
    locate: Locate,
    put: Put,
) -> Lead:
    # Hand-fused for speed: the common placements of a list in one frame (given by
    # position or by keyword, or left to its default), the same values ``locate`` and
    # ``put`` give; everything else through them.  Measured (timeit, CPU time, best of
    # 30): 0.15 / 0.18 / 0.25 us (default / position / keyword) against 0.19 / 0.20 /
    # 0.30 us calling the two; tests/core/test_fallback_policy.py checks it against them.
    cut = _NOWHERE if position is None else position
    by_default = isinstance(default, (list, tuple))
    by_keyword = not (positional_only and position is not None)

    def lead(
        args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Sequence[Any] | None, tuple[Any, ...], dict[str, Any]]:
        given = len(args)
        if given > cut:
            value = args[cut]
            if value.__class__ is list and value:
                replaced = list(args)
                replaced[cut] = [value[0]]
                return value, tuple(replaced), kwargs
        elif not kwargs:
            if by_default and default:
                if given == cut:
                    return default, args + ([default[0]],), kwargs  # noqa: RUF005 - see _putter
                if position is None:
                    return default, args, {name: [default[0]]}
        elif by_keyword:
            value = kwargs.get(name)
            if value.__class__ is list and value:
                return value, args, {**kwargs, name: [value[0]]}
        candidates = locate(args, kwargs)
        if candidates is None:
            return None, args, kwargs
        return (candidates, *put(args, kwargs, candidates[0]))

    return lead
