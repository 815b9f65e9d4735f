"""The lossless codec: Python values to the JSON bytes runlog stores, and back.

orjson enters runlog here and nowhere else. Plain JSON values (``dict`` with ``str``
keys, ``list``, ``str``, finite ``float``, ``int`` within 64 bits, ``bool``, ``None``)
are written by orjson as they are: compact, UTF-8, dict keys in insertion order. That
output is the *canonical form*; ``docs/codec.md`` pins it.

Everything else JSON cannot hold is written as a one-key *tag object*
``{"$rl:<tag>": payload}`` and turned back into an equal value by :func:`decode`:

==================  =====================================================
value               stored as
==================  =====================================================
NaN, ±Inf           ``{"$rl:float": "nan" | "inf" | "-inf"}``
int beyond 64 bits  ``{"$rl:int": "<decimal digits>"}``
lone surrogates     ``{"$rl:str": "<hex of UTF-8 with surrogatepass>"}``
bytes, bytearray    ``{"$rl:bytes": "<base64>"}`` / ``{"$rl:bytearray": ...}``
tuple               ``{"$rl:tuple": [...]}``
set, frozenset      ``{"$rl:set": [...]}`` / ``{"$rl:frozenset": [...]}`` (sorted by encoding)
odd dict keys       ``{"$rl:dict": [[key, value], ...]}`` (non-str keys, or keys
                    starting with ``$rl:`` so user data can never pose as a tag)
datetime/date/time  ``{"$rl:datetime": iso}`` ... (offset and microseconds kept);
                    ZoneInfo: ``{"$rl:datetime": [naive iso, "Zone/Key", fold]}``
timedelta           ``{"$rl:timedelta": [days, seconds, microseconds]}``
UUID, Decimal       ``{"$rl:uuid": str}``, ``{"$rl:decimal": str}``
Enum member         ``{"$rl:enum": ["module:Qualname", value]}``
dataclass           ``{"$rl:dataclass": ["module:Qualname", {field: value}]}``
pydantic model      ``{"$rl:pydantic": ["module:Qualname", model_dump()]}``
exception           ``{"$rl:exception": ["module:Qualname", [args...], "str(exc)"]}``
registered type     ``{"$rl:<name>": encoder(value)}`` (see :func:`register`)
==================  =====================================================

Decoding never imports code: a class-carrying tag is rebuilt only when its module is
already imported in the reading process (or its type is registered); otherwise it
decodes to :class:`Opaque`, which re-encodes to the very same bytes. Any other
object raises :class:`~runlog.errors.EncodingError` unless ``lossy=True`` is passed,
in which case it is stored as ``{"$rl:repr": ["module:Qualname", repr(value)]}`` and
decodes to an :class:`Opaque` (documented loss, never silent).

Subclasses of ``dict``/``list``/``str``/``int``/``float`` that are not enums or
registered types are stored as their base type; they compare equal to it.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import math
import sys
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from runlog.errors import EncodingError

__all__ = [
    "TAG_PREFIX",
    "Opaque",
    "decode",
    "dumps_plain",
    "encode",
    "loads_plain",
    "register",
]

TAG_PREFIX = "$rl:"
_TAG_MARK = b'"$rl:'
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

_JSON_TYPES = frozenset({str, int, float, bool, type(None), dict, list, object})
_Encoder = Callable[[Any], Any]
_Decoder = Callable[[Any], Any]
_registry_by_type: dict[type, tuple[str, _Encoder]] = {}
_registry_by_tag: dict[str, _Decoder] = {}
_resolved: dict[type, tuple[str, _Encoder] | None] = {}  # type -> registration, by MRO


@dataclasses.dataclass(frozen=True)
class Opaque:
    """A tagged value whose type is not available in this process.

    It keeps the tag and the payload exactly, so encoding it again yields the bytes it
    was read from; import the module (or register the type) to get the real object.
    """

    tag: str
    payload: Any


def register(
    cls: type, name: str, encoder: Callable[[Any], Any], decoder: Callable[[Any], Any]
) -> None:
    """Teach the codec a type: ``encoder(value)`` returns any encodable value that
    ``decoder`` turns back into an equal object. Adapters use it (LangChain messages
    go through their own ``dumpd``/``load``). Registered types win over the built-in
    rules, subclasses included, so a registered ``dict`` subclass keeps its type.

    The encoder may instead return an ``orjson.Fragment`` of JSON text that is already
    plain in the sense of this module (nothing in it would be tagged), which spares the
    codec a walk over the payload. It is stored verbatim, so checking that it is plain
    is the encoder's duty; the LangChain adapter does it for streamed message chunks,
    and its tests check that the bytes equal those of the walk."""
    if cls in _JSON_TYPES:
        raise ValueError(f"{cls.__name__} is plain JSON to the codec; register a subclass")
    if not name or TAG_PREFIX in name:
        raise ValueError(f"bad codec tag name {name!r}")
    _registry_by_type[cls] = (name, encoder)
    _registry_by_tag[name] = decoder
    _resolved.clear()


def _resolve(t: type) -> tuple[str, _Encoder] | None:
    """The registration that applies to type ``t``: its own, else its nearest base's."""
    for cls in t.__mro__:
        reg = _registry_by_type.get(cls)
        if reg is not None:
            return reg
    return None


def dumps_plain(value: Any) -> bytes:
    """orjson for values already known to be plain JSON (internal records)."""
    return orjson.dumps(value)


def loads_plain(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON without un-tagging (use :func:`decode` for stored values)."""
    return orjson.loads(data)


# --------------------------------------------------------------------- encode


def encode(value: Any, *, lossy: bool = False) -> bytes:
    """Encode ``value`` in the canonical form (see the module docstring).

    Args:
        value: any value; plain JSON goes straight to orjson.
        lossy: store unknown objects as a ``$rl:repr`` marker instead of raising.

    Raises:
        EncodingError: the value holds an object of a type the codec cannot keep.
    """
    if type(value) is str or value is None or type(value) is bool:
        try:
            return orjson.dumps(value)
        except orjson.JSONEncodeError:  # lone surrogates
            return orjson.dumps(_tagged(value, lossy))
    if _is_plain(value):
        try:
            return orjson.dumps(value)
        except orjson.JSONEncodeError:  # big ints, surrogates: take the slow path
            pass
    return orjson.dumps(_tagged(value, lossy))


def _is_plain(v: Any) -> bool:
    """True when orjson would write ``v`` without changing its meaning.

    Cheap structural check; strings with surrogates and ints beyond 64 bits are left to
    orjson, which refuses them, and the caller then falls back to tagging.
    """
    t = type(v)
    if t is str or t is int or t is bool or v is None:
        return True
    if t is float:
        return math.isfinite(v)
    if t is list:
        return all(_is_plain(x) for x in v)
    if t is dict:
        for k, x in v.items():
            if type(k) is not str or k.startswith(TAG_PREFIX) or not _is_plain(x):
                return False
        return True
    return False


def _tag(name: str, payload: Any) -> dict[str, Any]:
    return {TAG_PREFIX + name: payload}


def _qualname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _tagged(v: Any, lossy: bool) -> Any:
    """Return a plain-JSON structure equivalent to ``v`` (tags where needed)."""
    t = type(v)
    # exact JSON types first: they cannot be registered (see register), and a
    # recorded chunk is mostly made of them
    if t is str:
        if v.isascii():
            return v
    elif t is dict:
        for k in v:
            if type(k) is not str or k.startswith(TAG_PREFIX):
                break
        else:
            return {k: _tagged(x, lossy) for k, x in v.items()}
    elif t is list:
        return [_tagged(x, lossy) for x in v]
    elif v is None or t is bool:
        return v
    elif t is int:
        if _INT64_MIN <= v <= _INT64_MAX:
            return v
    elif t is float and math.isfinite(v):
        return v
    if _registry_by_type:
        try:
            reg = _resolved[t]
        except KeyError:
            reg = _resolved[t] = _resolve(t)
        if reg is not None:
            payload = reg[1](v)
            if type(payload) is orjson.Fragment:
                return {TAG_PREFIX + reg[0]: payload}
            return {TAG_PREFIX + reg[0]: _tagged(payload, lossy)}
    if v is None or t is bool:
        return v
    if isinstance(v, enum.Enum):
        return _tag("enum", [_qualname(t), _tagged(v.value, lossy)])
    if isinstance(v, str):
        s = str.__str__(v)
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            return _tag("str", s.encode("utf-8", "surrogatepass").hex())
        return s
    if isinstance(v, int):
        i = int(v)
        if _INT64_MIN <= i <= _INT64_MAX:
            return i
        return _tag("int", str(i))
    if isinstance(v, float):
        f = float(v)
        if math.isfinite(f):
            return f
        return _tag("float", "nan" if f != f else ("inf" if f > 0 else "-inf"))
    if isinstance(v, dict):
        if all(type(k) is str and not k.startswith(TAG_PREFIX) for k in v):
            return {k: _tagged(x, lossy) for k, x in v.items()}
        return _tag("dict", [[_tagged(k, lossy), _tagged(x, lossy)] for k, x in v.items()])
    if isinstance(v, list):
        return [_tagged(x, lossy) for x in v]
    if isinstance(v, tuple) and not hasattr(v, "_fields"):
        return _tag("tuple", [_tagged(x, lossy) for x in v])
    if isinstance(v, (set, frozenset)):
        items = sorted((_tagged(x, lossy) for x in v), key=orjson.dumps)
        return _tag("frozenset" if isinstance(v, frozenset) else "set", items)
    if isinstance(v, bytes):
        return _tag("bytes", base64.b64encode(v).decode("ascii"))
    if isinstance(v, bytearray):
        return _tag("bytearray", base64.b64encode(bytes(v)).decode("ascii"))
    if isinstance(v, dt.datetime):
        return _tag("datetime", _datetime_payload(v, lossy))
    if isinstance(v, dt.date):
        return _tag("date", v.isoformat())
    if isinstance(v, dt.time):
        if v.tzinfo is not None and type(v.tzinfo) is not dt.timezone and not lossy:
            raise EncodingError(
                f"cannot store a time with tzinfo {type(v.tzinfo).__name__} losslessly; "
                "use a fixed offset (datetime.timezone) or a datetime")
        return _tag("time", v.isoformat())
    if isinstance(v, dt.timedelta):
        return _tag("timedelta", [v.days, v.seconds, v.microseconds])
    if isinstance(v, uuid.UUID):
        return _tag("uuid", str(v))
    if isinstance(v, decimal.Decimal):
        return _tag("decimal", str(v))
    if isinstance(v, Opaque):
        return {v.tag: v.payload}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        fields = {f.name: _tagged(getattr(v, f.name), lossy) for f in dataclasses.fields(v)}
        return _tag("dataclass", [_qualname(t), fields])
    model_dump = getattr(v, "model_dump", None)
    if callable(model_dump) and hasattr(t, "model_validate"):
        return _tag("pydantic", [_qualname(t), _tagged(model_dump(), lossy)])
    if isinstance(v, BaseException):
        return _tag("exception", [_qualname(t), _tagged(list(v.args), True), str(v)])
    if isinstance(v, tuple):  # namedtuple: keep the class when it can be found again
        return _tag("namedtuple", [_qualname(t), [_tagged(x, lossy) for x in v]])
    if lossy:
        return _tag("repr", [_qualname(t), repr(v)])
    raise EncodingError(
        f"cannot store a value of type {_qualname(t)} without changing it: JSON cannot "
        "hold it and runlog has no encoder for it. Convert it to plain data first, or "
        "teach the codec with runlog.codec.register(cls, name, encoder, decoder)."
    )


# --------------------------------------------------------------------- decode


def decode(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse stored JSON and turn tag objects back into the values they stand for."""
    value = orjson.loads(data)
    raw = data if isinstance(data, (bytes, bytearray)) else bytes(str(data), "utf-8")
    if _TAG_MARK not in raw:
        return value
    return untag(value)


def untag(v: Any) -> Any:
    """Rebuild tagged values inside an already parsed JSON structure."""
    t = type(v)
    if t is list:
        return [untag(x) for x in v]
    if t is not dict:
        return v
    if len(v) == 1:
        ((k, payload),) = v.items()
        if k.startswith(TAG_PREFIX):
            return _untag_one(k[len(TAG_PREFIX) :], payload)
    return {k: untag(x) for k, x in v.items()}


def _find_class(qualname: str) -> type | None:
    module_name, _, path = qualname.partition(":")
    obj: Any = sys.modules.get(module_name)  # never import while reading
    for part in path.split("."):
        if obj is None:
            return None
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, type) else None


def _datetime_payload(v: dt.datetime, lossy: bool) -> Any:
    """ISO text for naive and fixed-offset datetimes; ``[naive ISO, zone key, fold]`` for
    ``zoneinfo.ZoneInfo`` ones, so the zone (and the fold of a repeated hour) survives.
    Other tzinfo classes (pytz, dateutil) cannot be rebuilt without importing their
    code: refused, or stored as their UTC offset when ``lossy``."""
    tz = v.tzinfo
    if tz is None or type(tz) is dt.timezone:
        return v.isoformat() if not v.fold else [v.isoformat(), None, v.fold]
    key = getattr(tz, "key", None)
    if type(tz).__module__ == "zoneinfo" and isinstance(key, str):
        return [v.replace(tzinfo=None).isoformat(), key, v.fold]
    if lossy:
        return v.isoformat()
    raise EncodingError(
        f"cannot store a datetime with tzinfo {type(tz).__module__}.{type(tz).__name__} "
        "losslessly; convert it to zoneinfo.ZoneInfo or a fixed offset (datetime.timezone)")


def _datetime_from(p: Any) -> dt.datetime:
    if isinstance(p, str):
        return dt.datetime.fromisoformat(p)
    text, key, fold = p
    value = dt.datetime.fromisoformat(text)
    if key is not None:
        import zoneinfo  # the standard library's zone database, not user code

        value = value.replace(tzinfo=zoneinfo.ZoneInfo(key))
    return value.replace(fold=fold)


def _untag_one(tag: str, p: Any) -> Any:
    decoder = _registry_by_tag.get(tag)
    if decoder is not None:
        return decoder(untag(p))
    match tag:
        case "float":
            return float(p)
        case "int":
            return int(p)
        case "str":
            return bytes.fromhex(p).decode("utf-8", "surrogatepass")
        case "bytes":
            return base64.b64decode(p)
        case "bytearray":
            return bytearray(base64.b64decode(p))
        case "tuple":
            return tuple(untag(x) for x in p)
        case "set":
            return {untag(x) for x in p}
        case "frozenset":
            return frozenset(untag(x) for x in p)
        case "dict":
            return {untag(k): untag(x) for k, x in p}
        case "datetime":
            return _datetime_from(p)
        case "date":
            return dt.date.fromisoformat(p)
        case "time":
            return dt.time.fromisoformat(p)
        case "timedelta":
            return dt.timedelta(days=p[0], seconds=p[1], microseconds=p[2])
        case "uuid":
            return uuid.UUID(p)
        case "decimal":
            return decimal.Decimal(p)
    cls = _find_class(p[0]) if isinstance(p, list) and p and isinstance(p[0], str) else None
    if cls is not None:
        try:
            match tag:
                case "enum":
                    return cls(untag(p[1]))
                case "dataclass":
                    fields = {k: untag(x) for k, x in p[1].items()}
                    init = {f.name for f in dataclasses.fields(cls) if f.init}
                    obj = cls(**{k: x for k, x in fields.items() if k in init})
                    for k, x in fields.items():
                        if k not in init:
                            object.__setattr__(obj, k, x)
                    return obj
                case "pydantic":
                    return cls.model_validate(untag(p[1]))  # type: ignore[attr-defined]
                case "namedtuple":
                    return cls(*(untag(x) for x in p[1]))
                case "exception":
                    return cls(*untag(p[1]))
        except Exception:  # the class changed since it was written: keep the data
            pass
    return Opaque(TAG_PREFIX + tag, p)
