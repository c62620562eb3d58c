"""Credentials out of sight: masks for settings, URLs and free text.

A redis password reaches opero in three shapes: a ``password`` key in
``cache_backend_config`` / ``rate_limit_backend_config``, a URL's credentials
(``redis://user:secret@host:6379/0``, ``rediss://:secret@...``) or a URL's
query (``unix:///run/redis.sock?password=secret``).  Everything opero shows
(introspection, reprs, log lines, the CLI's messages) passes through here
first, and each shape is replaced by ``"<set>"``, as ``cache_secret`` always
was: the reader learns that a credential is given, never what it is.  A
username goes too: redis-py hides it alongside the password, and with ACLs
it is half of the credential.

Nothing here runs on a decorated call; it is imported when something is shown.

Examples:
    >>> from opero.core.secrets import mask_url, scrub
    >>> mask_url("redis://app:hunter2@cache.internal:6379/0")
    'redis://<set>@cache.internal:6379/0'
    >>> scrub("cannot reach unix:///run/redis.sock?db=1&password=hunter2")
    'cannot reach unix:///run/redis.sock?db=1&password=<set>'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import unquote

__all__ = [
    "MASK",
    "config_secrets",
    "is_credential",
    "mask_config",
    "mask_url",
    "masked_settings",
    "scrub",
    "url_secrets",
]

#: What a credential is shown as.
MASK: Final = "<set>"

#: A setting or query key holding any of these words is a secret.
_SECRET_WORDS: Final = ("password", "passwd", "secret", "token", "credential", "auth")
#: ... and with these, a credential: masked where shown, but not searched for in
#: free text (a username such as "app" would mangle every "application").
_WORDS: Final = (*_SECRET_WORDS, "username")

#: ``scheme://userinfo@``: the userinfo runs to the last ``@`` before the path,
#: so a password with an unescaped ``@`` is masked whole.
_USERINFO: Final = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s]*@")
#: ``?password=...`` or ``&username=...`` in a URL's query.
_QUERY: Final = re.compile(
    r"(?P<key>[?&;][^=&#\s]*(?:" + "|".join(_WORDS) + r")[^=&#\s]*=)[^&#\s]*", re.IGNORECASE
)


def is_credential(key: object) -> bool:
    """Whether a setting named ``key`` holds a credential (``password``, ``username``...)."""
    return isinstance(key, str) and any(word in key.lower() for word in _WORDS)


def scrub(text: str, secrets: Iterable[str | bytes] = ()) -> str:
    """``text`` with URL credentials masked, and each of ``secrets`` wherever it appears.

    For free text: exception messages and log lines, which may quote a URL.
    """
    text = _QUERY.sub(rf"\g<key>{MASK}", _USERINFO.sub(rf"\g<scheme>{MASK}@", text))
    for secret in secrets:
        value = secret.decode(errors="replace") if isinstance(secret, bytes) else secret
        if value:
            text = text.replace(value, MASK)
    return text


def mask_url(url: str) -> str:
    """``url`` with its userinfo and credential query values replaced by ``"<set>"``."""
    return scrub(url)


def url_secrets(url: str) -> list[str]:
    """The passwords written in ``url`` (after ``user:``, or a query's), raw and decoded."""
    found: list[str] = []
    _, sep, rest = url.partition("://")
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0] if sep else ""
    userinfo, at, _ = netloc.rpartition("@")
    if at and ":" in userinfo:
        found.append(userinfo.split(":", 1)[1])
    for match in _QUERY.finditer(url):
        if any(word in match.group("key").lower() for word in _SECRET_WORDS):
            found.append(match.group(0)[len(match.group("key")) :])
    found = [value for value in found if value]
    return found + [unquote(value) for value in found if unquote(value) != value]


def mask_config(config: Mapping[Any, Any]) -> dict[Any, Any]:
    """A backend config to show: credentials masked, URLs masked, clients by type only.

    A client object is shown as ``"<Redis>"``: its own repr may list the
    connection's settings, and not every version of every client hides them.
    """
    return {key: _mask(key, value) for key, value in config.items()}


def _mask(key: object, value: Any) -> Any:
    if value is None:
        return None
    if is_credential(key):
        return MASK
    if isinstance(value, str):
        return mask_url(value) if "://" in value else value
    if isinstance(value, (bool, int, float, bytes)):
        return value
    if isinstance(value, Mapping):
        return mask_config(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_mask(None, item) for item in value)
    return f"<{type(value).__qualname__}>"


def masked_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """Decorator settings to show: ``cache_secret`` and every backend config masked.

    Any other string setting that carries URL credentials (a scheduler address
    ``client="tls://user:pw@host"``) is masked too.
    """
    shown: dict[str, Any] = {}
    for name, value in config.items():
        if value is not None and (name == "cache_secret" or is_credential(name)):
            shown[name] = MASK
        elif name.endswith("_backend_config") and isinstance(value, Mapping):
            shown[name] = mask_config(value)
        elif isinstance(value, str) and "://" in value:
            shown[name] = mask_url(value)
        else:
            shown[name] = value
    return shown


def config_secrets(config: Mapping[str, Any]) -> list[str]:
    """Every credential in one backend config: its credential keys' values and URLs' parts."""
    found: list[str] = []
    for key, value in config.items():
        if isinstance(value, bytes):
            value = value.decode(errors="replace")  # noqa: PLW2901
        if not isinstance(value, str) or not value:
            continue
        if isinstance(key, str) and any(word in key.lower() for word in _SECRET_WORDS):
            found.append(value)
        elif "://" in value:
            found.extend(url_secrets(value))
    return found
