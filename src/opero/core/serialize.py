"""How cached values become bytes for disk, sqlite and redis, and back.

Every stored entry is an envelope: a magic header, the serializer used, the
wall-clock expiry, an optional HMAC-SHA256 signature, then the payload.  The
expiry travels with the value so TTLs read the injectable clock (tests move
time instead of waiting) even where the backend also expires entries itself.

With ``cache_secret`` every entry is signed, and one whose signature does not
match is treated as a miss: a shared redis or cache directory must not become a
way to make this process unpickle (and so run) someone else's bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any, Final, final

from opero.core import validate
from opero.core.backends.memory import MISSING
from opero.core.frozen import Frozen
from opero.exceptions import ConfigurationError

__all__ = ["SERIALIZERS", "Codec", "UnreadableEntryError"]

#: The serializers a persistent cache can use.
SERIALIZERS: Final = ("pickle", "json")

_MAGIC: Final = b"OP1"
_HEADER: Final = struct.Struct("!3scd")  # magic, serializer code, expires at (0 = never)
_SIGNATURE_SIZE: Final = 32
_CODES: Final = {"pickle": b"p", "json": b"j"}


class UnreadableEntryError(Exception):
    """A stored entry that cannot be trusted or read: corrupt, truncated or wrongly signed."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        #: ``"corrupt"`` or ``"signature"``: the kind of failure, for once-per-kind logging.
        self.kind = kind


@final
class Codec(Frozen):
    """Serializer plus optional signing key; turns values into envelopes and back."""

    __slots__ = ("_code", "_key", "serializer")

    serializer: str
    _key: bytes | None
    _code: bytes

    def __init__(self, serializer: str = "pickle", secret: str | bytes | None = None) -> None:
        validate.choice("cache_serializer", serializer, SERIALIZERS)
        if secret is not None and (not isinstance(secret, (str, bytes)) or not secret):
            msg = "cache_secret must be a non-empty str or bytes"
            raise ConfigurationError(msg)
        key = secret.encode() if isinstance(secret, str) else secret
        self._init(serializer=serializer, _key=key, _code=_CODES[serializer])

    @property
    def signed(self) -> bool:
        """Whether entries are signed (``cache_secret`` given)."""
        return self._key is not None

    def encode(self, value: Any, expires_at: float | None) -> bytes:
        """The envelope for ``value`` (raises if the value cannot be serialized)."""
        if self.serializer == "json":
            import json  # noqa: PLC0415 - only json caches pay for it

            payload = json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
        else:
            import pickle  # noqa: PLC0415

            payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        header = _HEADER.pack(_MAGIC, self._code, expires_at or 0.0)
        if self._key is None:
            return header + payload
        signature = hmac.new(self._key, header + payload, hashlib.sha256).digest()
        return header + signature + payload

    def decode(self, data: bytes, now: float) -> Any:
        """The value in ``data``, or ``MISSING`` if expired; UnreadableEntryError if untrusted."""
        size = _HEADER.size
        if len(data) < size:
            raise UnreadableEntryError("corrupt", "entry shorter than its header")
        magic, code, expires_at = _HEADER.unpack_from(data)
        if magic != _MAGIC or code not in (b"p", b"j"):
            raise UnreadableEntryError("corrupt", "entry does not start with an opero header")
        if self._key is not None:
            signature = data[size : size + _SIGNATURE_SIZE]
            payload = data[size + _SIGNATURE_SIZE :]
            expected = hmac.new(self._key, data[:size] + payload, hashlib.sha256).digest()
            if not hmac.compare_digest(signature, expected):
                raise UnreadableEntryError(
                    "signature", "entry signature does not match cache_secret"
                )
        else:
            payload = data[size:]
        if code != self._code:
            # Never let the entry choose pickle: a json cache must not unpickle anything.
            raise UnreadableEntryError("corrupt", "entry was written with another cache_serializer")
        if expires_at and expires_at <= now:
            return MISSING
        try:
            if code == b"j":
                import json  # noqa: PLC0415

                return json.loads(payload)
            import pickle  # noqa: PLC0415

            return pickle.loads(payload)  # noqa: S301 - signed when cache_secret is set
        except Exception as exc:
            raise UnreadableEntryError(
                "corrupt", f"cannot decode entry ({type(exc).__name__})"
            ) from exc
