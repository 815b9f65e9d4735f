"""The codec keeps every value it accepts, and refuses the rest with a clear error."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import math
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runlog import codec
from runlog.errors import EncodingError


class Colour(enum.Enum):
    RED = "red"
    BLUE = 2


@codec.trust  # a dataclass is rebuilt by calling it: only for a class the reader trusts
@dataclasses.dataclass
class Point:
    x: int
    y: list[Any]


def same(a: Any, b: Any) -> bool:
    """Equality that also says NaN == NaN and checks container types exactly."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if dataclasses.is_dataclass(a):  # its own == says NaN != NaN inside
        return all(same(getattr(a, f.name), getattr(b, f.name))
                   for f in dataclasses.fields(a))
    return bool(a == b)


scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # includes values far beyond 64 bits
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()  # includes lone surrogates
    | st.binary(max_size=20)
    | st.datetimes(timezones=st.none() | st.timezones())
    | st.dates()
    | st.times()
    | st.timedeltas()
    | st.uuids()
    | st.decimals(allow_nan=False)
    | st.sampled_from(Colour)
)
hashable = st.integers() | st.text(max_size=5) | st.booleans() | st.none()
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=6), inner, max_size=4)
        | st.dictionaries(hashable, inner, max_size=3)
        | st.frozensets(hashable, max_size=3)
        | st.sets(st.integers(), max_size=3)
        | st.builds(Point, st.integers(), st.lists(inner, max_size=2))
    ),
    max_leaves=12,
)


@given(values)
def test_decode_encode_round_trip(value: Any) -> None:
    """decode(encode(x)) == x for every value the codec accepts (NaN equal to NaN)."""
    encoded = codec.encode(value)
    assert same(codec.decode(encoded), value)


@given(values)
def test_encode_is_deterministic_and_valid_utf8_json(value: Any) -> None:
    a = codec.encode(value)
    assert a == codec.encode(value)
    a.decode("utf-8")  # strict UTF-8: never a lone surrogate in the bytes
    orjson.loads(a)


@given(values)
def test_reencoding_decoded_value_gives_same_bytes(value: Any) -> None:
    encoded = codec.encode(value)
    assert codec.encode(codec.decode(encoded)) == encoded


@given(st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(alphabet=st.characters(
        blacklist_categories=("Cs",))),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=5).filter(lambda k: not k.startswith("$rl:")), inner, max_size=4),
    max_leaves=15))
def test_plain_json_is_exactly_orjson(value: Any) -> None:
    """Plain JSON values are stored as orjson writes them: the canonical form."""
    assert codec.encode(value) == orjson.dumps(value)


def test_documented_tags() -> None:
    assert codec.encode(float("nan")) == b'{"$rl:float":"nan"}'
    assert codec.encode([float("inf"), -math.inf]) == (
        b'[{"$rl:float":"inf"},{"$rl:float":"-inf"}]')
    assert codec.encode(2**64) == b'{"$rl:int":"18446744073709551616"}'
    assert codec.encode("\udc80") == b'{"$rl:str":"edb280"}'
    assert codec.encode(b"\x00") == b'{"$rl:bytes":"AA=="}'
    assert codec.encode((1, 2)) == b'{"$rl:tuple":[1,2]}'
    assert codec.encode({1: "a"}) == b'{"$rl:dict":[[1,"a"]]}'
    assert codec.encode({"$rl:int": "1"}) == b'{"$rl:dict":[["$rl:int","1"]]}'
    assert codec.encode(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) == (
        b'{"$rl:datetime":"2026-01-01T00:00:00+00:00"}')
    assert codec.encode(decimal.Decimal("1.10")) == b'{"$rl:decimal":"1.10"}'
    assert codec.encode(Colour.RED) == (
        b'{"$rl:enum":["' + Colour.__module__.encode() + b':Colour","red"]}')


def test_unknown_objects_are_refused_with_a_clear_error() -> None:
    class Secret:
        pass

    with pytest.raises(EncodingError, match=r"cannot store a value of type .*Secret"):
        codec.encode({"x": Secret()})
    marker = codec.decode(codec.encode({"x": Secret()}, lossy=True))["x"]
    assert isinstance(marker, codec.Opaque)
    assert marker.tag == "$rl:repr"


def test_classes_not_imported_decode_to_opaque_and_reencode_identically() -> None:
    raw = b'{"$rl:dataclass":["not_a_module_anywhere:Thing",{"a":1}]}'
    value = codec.decode(raw)
    assert value == codec.Opaque("$rl:dataclass", ["not_a_module_anywhere:Thing", {"a": 1}])
    assert codec.encode(value) == raw


def test_pydantic_models_round_trip() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Doc(pydantic.BaseModel):
        text: str
        score: float = 0.5

    d = Doc(text="hi")
    assert isinstance(codec.decode(codec.encode(d)), codec.Opaque)  # not trusted yet
    codec.trust(Doc)
    assert codec.decode(codec.encode(d)) == d


def test_registered_types_win() -> None:
    class Money:
        def __init__(self, cents: int) -> None:
            self.cents = cents

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Money) and other.cents == self.cents

        __hash__ = None  # type: ignore[assignment]

    codec.register(Money, "test-money", lambda m: m.cents, Money)
    assert codec.encode(Money(5)) == b'{"$rl:test-money":5}'
    assert codec.decode(codec.encode([Money(5)])) == [Money(5)]
    with pytest.raises(ValueError, match="bad codec tag"):
        codec.register(Money, "$rl:x", lambda m: m, Money)


@pytest.mark.parametrize("cls", [str, int, float, bool, dict, list, type(None), object])
def test_plain_json_types_cannot_be_registered(cls: type) -> None:
    # their meaning is fixed: a registration would re-tag every plain value
    with pytest.raises(ValueError, match="plain JSON"):
        codec.register(cls, "test-plain", lambda v: v, lambda v: v)


def test_a_subclass_registered_later_wins_over_its_base() -> None:
    class Base:
        def __init__(self, n: int) -> None:
            self.n = n

    class Sub(Base):
        pass

    codec.register(Base, "test-base", lambda b: b.n, Base)
    assert codec.encode(Sub(1)) == b'{"$rl:test-base":1}'  # resolved through the MRO
    codec.register(Sub, "test-sub", lambda b: b.n, Sub)  # clears the resolution cache
    assert codec.encode(Sub(1)) == b'{"$rl:test-sub":1}'
    assert codec.encode(Base(1)) == b'{"$rl:test-base":1}'


def test_an_encoder_may_return_pre_encoded_json() -> None:
    class Point:
        def __init__(self, x: int, y: int) -> None:
            self.x, self.y = x, y

    codec.register(Point, "test-point",
                   lambda p: orjson.Fragment(b'{"x":%d,"y":%d}' % (p.x, p.y)),
                   lambda d: Point(d["x"], d["y"]))
    raw = codec.encode({"p": Point(1, 2), "n": math.nan})
    assert raw == b'{"p":{"$rl:test-point":{"x":1,"y":2}},"n":{"$rl:float":"nan"}}'
    back = codec.decode(raw)
    assert (back["p"].x, back["p"].y) == (1, 2)


def test_zoneinfo_datetimes_keep_their_zone_and_fold() -> None:
    import zoneinfo

    tz = zoneinfo.ZoneInfo("America/Guatemala")
    for fold in (0, 1):  # 23:00 on 1983-09-21 happened twice there (DST ended)
        value = dt.datetime(1983, 9, 21, 23, 0, tzinfo=tz, fold=fold)
        back = codec.decode(codec.encode(value))
        assert back == value
        assert back.tzinfo is tz  # ZoneInfo instances are cached per key
        assert back.fold == fold
        assert back.utcoffset() == value.utcoffset()


def test_foreign_tzinfo_is_refused_unless_lossy() -> None:
    class Odd(dt.tzinfo):
        def utcoffset(self, d: dt.datetime | None) -> dt.timedelta:
            return dt.timedelta(hours=2)

    value = dt.datetime(2026, 1, 1, tzinfo=Odd())
    with pytest.raises(EncodingError, match="tzinfo"):
        codec.encode(value)
    assert codec.decode(codec.encode(value, lossy=True)) == value  # same instant, as offset


def test_uuid_and_namedtuple() -> None:
    u = uuid.uuid4()
    assert codec.decode(codec.encode(u)) == u
