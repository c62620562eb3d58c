"""Envelopes of persistent cache entries: round trips, expiry, signatures, damage."""

from __future__ import annotations

import json
import pickle
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opero import ConfigurationError
from opero.core.backends.memory import MISSING
from opero.core.serialize import Codec, UnreadableEntryError

#: magic (3 bytes), serializer code (1), expiry as a double (8).
HEADER_SIZE = 12
SIGNATURE_SIZE = 32

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)
python_values = st.recursive(
    json_values | st.binary(max_size=8) | st.dates() | st.complex_numbers(allow_nan=False),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.frozensets(st.integers() | st.text(max_size=3), max_size=4)
        | st.dictionaries(st.integers() | st.text(max_size=3), children, max_size=4)
    ),
    max_leaves=20,
)


@given(python_values)
def test_pickle_round_trips_python_values(value: Any) -> None:
    codec = Codec("pickle")
    assert codec.decode(codec.encode(value, None), now=0.0) == value


@given(json_values)
def test_json_round_trips_json_values(value: Any) -> None:
    codec = Codec("json")
    assert codec.decode(codec.encode(value, None), now=0.0) == value


@given(python_values)
def test_signed_entries_round_trip(value: Any) -> None:
    codec = Codec("pickle", "key")
    data = codec.encode(value, None)
    assert codec.decode(data, now=0.0) == value
    assert Codec("pickle", b"key").decode(data, now=0.0) == value  # str and bytes keys agree
    assert len(data) == len(Codec("pickle").encode(value, None)) + SIGNATURE_SIZE


@pytest.mark.parametrize("serializer", ["pickle", "json"])
@pytest.mark.parametrize("secret", [None, "key"])
def test_none_is_a_value_not_a_miss(serializer: str, secret: str | None) -> None:
    codec = Codec(serializer, secret)
    assert codec.decode(codec.encode(None, None), now=0.0) is None


def test_pickle_keeps_types_json_cannot() -> None:
    codec = Codec("pickle")
    value = {1: (2, {3}), "d": date(2026, 1, 2), "b": b"\x00"}
    decoded = codec.decode(codec.encode(value, None), now=0.0)
    assert decoded == value
    assert type(decoded[1]) is tuple


@pytest.mark.parametrize("serializer", ["pickle", "json"])
@pytest.mark.parametrize("secret", [None, "key"])
def test_expiry_travels_with_the_entry(serializer: str, secret: str | None) -> None:
    codec = Codec(serializer, secret)
    data = codec.encode(["v"], expires_at=1000.0)
    assert codec.decode(data, now=0.0) == ["v"]
    assert codec.decode(data, now=999.999) == ["v"]
    assert codec.decode(data, now=1000.0) is MISSING
    assert codec.decode(data, now=10**9) is MISSING


def test_no_expiry_never_expires() -> None:
    codec = Codec("pickle")
    assert codec.decode(codec.encode("v", None), now=1e15) == "v"


def test_entry_header_names_the_serializer() -> None:
    assert Codec("pickle").encode(1, None)[:4] == b"OP1p"
    data = Codec("json").encode({"a": [1, None]}, 5.0)
    assert data[:4] == b"OP1j"
    assert json.loads(data[HEADER_SIZE:]) == {"a": [1, None]}


def reason(codec: Codec, data: bytes) -> str:
    with pytest.raises(UnreadableEntryError) as info:
        codec.decode(data, now=0.0)
    return info.value.kind


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(-1, id="payload"),
        pytest.param(HEADER_SIZE, id="signature"),
        pytest.param(HEADER_SIZE - 1, id="expiry"),
    ],
)
def test_a_tampered_byte_breaks_the_signature(where: int) -> None:
    codec = Codec("pickle", "key")
    data = bytearray(codec.encode({"payload": "x" * 20}, expires_at=1e12))
    data[where] ^= 0x01
    assert reason(codec, bytes(data)) == "signature"


@given(st.data())
def test_no_tampered_signed_entry_is_ever_accepted(data: st.DataObject) -> None:
    codec = Codec("pickle", "key")
    entry = bytearray(codec.encode(["some", "value", 42], expires_at=None))
    position = data.draw(st.integers(0, len(entry) - 1))
    flip = data.draw(st.integers(1, 255))
    entry[position] ^= flip
    kind = reason(codec, bytes(entry))
    # Damage to the magic or serializer code is "corrupt"; anything else fails the signature.
    assert kind == ("corrupt" if position < 4 else "signature")


def test_serializer_code_swapped_under_a_signature_is_rejected() -> None:
    codec = Codec("pickle", "key")
    data = bytearray(codec.encode("v", None))
    data[3:4] = b"j"
    assert reason(codec, bytes(data)) == "signature"


def test_entry_signed_with_another_secret_is_rejected() -> None:
    data = Codec("pickle", "secret A").encode("v", None)
    assert reason(Codec("pickle", "secret B"), data) == "signature"


@pytest.mark.parametrize("serializer", ["pickle", "json"])
def test_unsigned_entry_read_with_a_secret_is_rejected(serializer: str) -> None:
    data = Codec(serializer).encode("v" * 40, None)  # longer than a signature
    assert reason(Codec(serializer, "key"), data) == "signature"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"garbage", id="short-garbage"),
        pytest.param(b"garbage that is longer than a header", id="long-garbage"),
        pytest.param(b"OP1x" + bytes(8) + pickle.dumps(1), id="unknown-serializer"),
        pytest.param(b"OP1p" + bytes(8) + b"\x80\x05not a pickle", id="bad-pickle"),
        pytest.param(b"OP1j" + bytes(8) + b"{not json", id="bad-json"),
        pytest.param(b"OP1j" + bytes(8) + b"\xff\xfe", id="json-not-utf8"),
    ],
)
def test_garbage_is_corrupt(data: bytes) -> None:
    assert reason(Codec("pickle"), data) == "corrupt"


@pytest.mark.parametrize("serializer", ["pickle", "json"])
def test_truncated_entries_are_corrupt(serializer: str) -> None:
    codec = Codec(serializer)
    data = codec.encode({"key": ["a", "long", "enough", "value"]}, None)
    for size in (0, 3, HEADER_SIZE - 1, HEADER_SIZE, len(data) - 1):
        assert reason(codec, data[:size]) == "corrupt", size


def test_truncated_signed_entry_is_rejected() -> None:
    codec = Codec("pickle", "key")
    data = codec.encode("value", None)
    for size in (HEADER_SIZE, HEADER_SIZE + 5, len(data) - 1):
        assert reason(codec, data[:size]) == "signature", size
    assert reason(codec, data[: HEADER_SIZE - 1]) == "corrupt"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({1, 2}, id="set"),
        pytest.param(object(), id="object"),
        pytest.param(b"bytes", id="bytes"),
        pytest.param({"when": date(2026, 1, 1)}, id="nested-date"),
        pytest.param({("tuple", "key"): 1}, id="tuple-key"),
    ],
)
def test_json_refuses_values_it_cannot_write(value: Any) -> None:
    with pytest.raises(TypeError):
        Codec("json").encode(value, None)


def test_pickle_refuses_values_it_cannot_write() -> None:
    with pytest.raises(Exception, match="pickle"):
        Codec("pickle").encode(lambda: None, None)


@pytest.mark.parametrize("serializer", ["yaml", "", None, "PICKLE", 1])
def test_unknown_serializer_is_a_configuration_error(serializer: Any) -> None:
    with pytest.raises(ConfigurationError, match="cache_serializer"):
        Codec(serializer)


@pytest.mark.parametrize("secret", ["", b"", 123, ["key"], True])
def test_bad_secret_is_a_configuration_error(secret: Any) -> None:
    with pytest.raises(ConfigurationError, match="cache_secret"):
        Codec("pickle", secret)


def test_codec_says_whether_it_signs() -> None:
    assert Codec("json", "k").signed
    assert not Codec("json").signed
    assert Codec("json").serializer == "json"


def test_unreadable_entry_error_carries_its_kind() -> None:
    error = UnreadableEntryError("corrupt", "detail")
    assert error.kind == "corrupt"
    assert str(error) == "detail"


class _Evil:
    ran: list[str] = []

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_Evil.ran.append, ("pickle ran",))


def test_json_cache_never_unpickles_an_entry() -> None:
    planted = Codec("pickle").encode(_Evil(), None)
    with pytest.raises(UnreadableEntryError) as info:
        Codec("json").decode(planted, 0.0)
    assert info.value.kind == "corrupt"
    assert _Evil.ran == []
