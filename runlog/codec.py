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
                    ZoneInfo: ``{"$rl:datetime": [naive iso, "Zone/Key", fold]}``;
                    a named or sub-second fixed offset, or a ``time`` with fold=1:
                    ``[naive iso, [days, seconds, microseconds(, name)], fold]``
timedelta           ``{"$rl:timedelta": [days, seconds, microseconds]}``
UUID, Decimal       ``{"$rl:uuid": str}``, ``{"$rl:decimal": str}``
Enum member         ``{"$rl:enum": ["module:Qualname", value]}``
dataclass           ``{"$rl:dataclass": ["module:Qualname", {field: value}]}``
pydantic model      ``{"$rl:pydantic": ["module:Qualname", model_dump()]}``
exception           ``{"$rl:exception": ["module:Qualname", [args...], "str(exc)"]}``
registered type     ``{"$rl:<name>": encoder(value)}`` (see :func:`register`)
Opaque made by code ``{"$rl:opaque": [tag, payload]}`` (never the tag it names)
==================  =====================================================

Decoding never runs code the reader did not trust, because stored bytes may come from
someone else (an imported file, a co-writer of a shared database; the digest chain
is unkeyed). It never imports, never calls ``getattr`` on a module or class, and calls
no constructor except builtin exceptions' (C code without side effects). Enum members
are looked up in their class's member table, without calling the class. Dataclasses,
namedtuples, pydantic models and other exceptions are rebuilt only for classes the
application named with :func:`trust` (or types it :func:`register`-ed). Everything
else decodes to :class:`Opaque`, which re-encodes to the very same bytes.

Any other object raises :class:`~runlog.errors.EncodingError` unless ``lossy=True`` is
passed, in which case it is stored as ``{"$rl:repr": ["module:Qualname", repr(value)]}``
and decodes to an :class:`Opaque` (documented loss, never silent); with ``lossy=True``
``encode`` never raises: what cannot be kept at all (a failing ``repr``, a cycle, nesting
beyond orjson's 255 levels, a failing registered encoder) is stored as
``{"$rl:unencodable": ["module:Qualname", "why"]}``.

Subclasses of ``dict``/``list``/``str``/``int``/``float`` that are not enums or
registered types are stored as their base type; they compare equal to it.
"""

from __future__ import annotations

import base64
import builtins
import dataclasses
import datetime as dt
import decimal
import enum
import math
import sys
import types
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

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
    "registration",
    "revive_exception",
    "trust",
    "untag",
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
_trusted: dict[str, type] = {}  # "module:Qualname" -> class named by trust()
_T = TypeVar("_T", bound=type)


@dataclasses.dataclass(frozen=True)
class Opaque:
    """A tagged value this process does not rebuild (unknown or untrusted type).

    One that :func:`decode` made keeps the tag and the payload exactly as stored, so
    encoding it again yields the bytes it was read from; :func:`trust` the class (or
    register the type) to get the real object. One that code makes itself is stored as
    ``{"$rl:opaque": [tag, payload]}``, so a writer cannot pass off a tag of its choosing.
    """

    tag: str
    payload: Any
    # set by decode only: the payload is stored JSON, to be written back verbatim
    _verbatim: bool = dataclasses.field(default=False, init=False, compare=False, repr=False)


def revive_exception(type_name: str, args: tuple[Any, ...],
                     attrs: dict[str, Any]) -> BaseException | None:
    """The recorded exception, as an instance of the very class ``type_name`` names
    (``module.Qualname``, a bare name for builtins), or None when that class is not
    importable here (defined in a function, its module not imported) or cannot be
    revived safely.

    The stored type may be forged, so no code of the class runs: a builtin exception is
    made by its C constructor with ``args``; any other ``BaseException`` subclass found
    by :func:`_find_class` (dictionary lookups only) is allocated by the ``__new__`` and
    ``__init__`` of its nearest builtin exception base (C code that only stores ``args``,
    plus ``errno``/``strerror``/``filename`` for ``OSError``), never its own ``__new__``
    or ``__init__``; ``attrs`` go into a builtin base's C slot (``OSError.filename``) or
    straight into the instance's ``__dict__``. A class that defines ``__del__`` is not
    revived (collecting the instance would run it). ``docs/codec.md`` states this."""
    if "." not in type_name:
        cls: type | None = _BUILTIN_EXCEPTIONS.get(f"builtins:{type_name}")
    else:
        cls = _find_exception_class(type_name)
    if cls is None:
        return None
    try:
        if id(cls) in _BUILTIN_IDS:
            exc = cls(*args)
        else:
            exc = _allocate(cls, args)
            if exc is None:
                return None
        _set_attributes(exc, attrs)
    except Exception:  # args the C constructor refuses (a forged store): not revived
        return None
    return exc  # type: ignore[no-any-return]


def _set_attributes(exc: BaseException, attrs: dict[str, Any]) -> None:
    """Write recorded attributes: through a builtin base's own C slot where it has one
    (``OSError.filename``, ``ImportError.name``), else into the instance ``__dict__``;
    never through the class's ``__setattr__`` or a descriptor of its own."""
    mro: tuple[type, ...] = _type_mro(type(exc))
    namespace = _exception_dict(exc)
    for k, v in attrs.items():
        for c in mro:
            if id(c) in _BUILTIN_IDS:
                slot = _type_dict(c).get(k)
                if type(slot) in (types.MemberDescriptorType, types.GetSetDescriptorType):
                    slot.__set__(exc, v)
                    break
        else:
            namespace[k] = v


def _find_exception_class(type_name: str) -> type | None:
    """The ``BaseException`` subclass ``module.Qual.Name`` names (an imported or a
    :func:`trust`-ed class), trying each split of the dotted name into module and
    qualname, kept only if the class's own module and qualname spell ``type_name`` (so
    an alias cannot stand for another class)."""
    parts = type_name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        qualname = ".".join(parts[:i]) + ":" + ".".join(parts[i:])
        cls = _trusted.get(qualname)  # trust finds local classes too
        if cls is None:
            cls = _find_class(qualname)
        if (cls is not None and issubclass(cls, BaseException)
                and f"{_type_module(cls)}.{_type_qualname(cls)}" == type_name):
            return cls
    return None


def _allocate(cls: type, args: tuple[Any, ...]) -> BaseException | None:
    """An instance of ``cls`` made by the C ``__new__``/``__init__`` of its nearest
    builtin exception base; None if a class in its MRO (a mixin after the base too)
    defines ``__del__``, or there is no builtin base."""
    mro: tuple[type, ...] = _type_mro(cls)
    builtin = [c for c in mro if id(c) in _BUILTIN_IDS]  # by identity: no __eq__/__hash__
    if not builtin or any("__del__" in _type_dict(c) for c in mro if id(c) not in _BUILTIN_IDS):
        return None
    base = builtin[0]
    make: Any = base
    exc = make.__new__(cls, *args)
    make.__init__(exc, *args)
    return exc  # type: ignore[no-any-return]


def _stored_opaque(tag: str, payload: Any) -> Opaque:
    o = Opaque(tag, payload)
    object.__setattr__(o, "_verbatim", True)
    return o


def trust(cls: _T) -> _T:
    """Let :func:`decode` rebuild instances of ``cls`` by calling its code.

    Stored values may come from someone else, so a dataclass, namedtuple, pydantic model,
    non-builtin exception or an enum's pseudo-member is rebuilt (``cls(...)``,
    ``cls.model_validate(...)``) only for a class the application trusts this way;
    until then it decodes to an :class:`Opaque`. Trust is per process and keyed by the
    ``module:Qualname`` the encoder writes. Usable as a class decorator; returns ``cls``.

    Raises:
        TypeError: ``cls`` is not a class.
    """
    if not isinstance(cls, type):
        raise TypeError(f"runlog.codec.trust takes a class, not {type(cls).__name__}")
    _trusted[_qualname(cls)] = cls
    return cls


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


def registration(t: type) -> tuple[str, Callable[[Any], Any]] | None:
    """``(tag name, encoder)`` that :func:`encode` uses for values of type ``t``, if it
    has resolved that already (None otherwise, or when none applies): an adapter that
    writes a value's bytes itself checks with it that they are the codec's."""
    return _resolved.get(t)


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
        lossy: store unknown objects as a ``$rl:repr`` marker, and what cannot be kept
            at all as a ``$rl:unencodable`` one, instead of raising: never raises.

    Raises:
        EncodingError: the value holds an object of a type the codec cannot keep, a
            cycle, nesting beyond 255 levels, or code it calls (``repr``, a registered
            encoder) failed. Nothing else: every failure is translated here.
    """
    try:
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
    except EncodingError as e:
        if lossy:  # only a failure below the value's own parts gets here
            return orjson.dumps(_unencodable(value, _describe(e)))
        raise
    except Exception as e:  # cycles, depth, user code: one error type for every caller
        if isinstance(e, RecursionError):
            why = "it contains itself or is nested too deeply for the call stack"
        elif isinstance(e, orjson.JSONEncodeError):
            why = f"orjson refused it ({_describe(e)}; nesting is limited to 255 levels)"
        else:
            why = f"encoding it raised {_describe(e)}"
        if lossy:
            return orjson.dumps(_unencodable(value, why))
        raise EncodingError(f"cannot store a value of type {_safe_qualname(type(value))}: "
                            f"{why}. Convert it to plain data first.") from e


def _describe(e: BaseException) -> str:
    """``Type: message`` of an exception whose ``__str__`` may itself fail."""
    try:
        return f"{type(e).__name__}: {e}"
    except Exception:
        return type(e).__name__


def _safe_qualname(cls: type) -> str:
    try:
        return _qualname(cls)
    except Exception:
        return "?"


def _unencodable(v: Any, why: str) -> dict[str, Any]:
    """The lossy placeholder for a value nothing of which could be kept."""
    return _tag("unencodable", [_safe_qualname(type(v)), why])


def _plain_key(k: Any) -> bool:
    """True for a dict key orjson writes as it is and no reader takes for a tag."""
    if type(k) is not str or k.startswith(TAG_PREFIX):
        return False
    if k.isascii():
        return True
    try:
        k.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: written as a $rl:str key
        return False
    return True


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
            if type(k) is not str or not (k.isascii() or _plain_key(k)) or k.startswith(
                    TAG_PREFIX):
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
            try:
                payload = reg[1](v)
            except Exception as e:  # the encoder's own bug: name it, keep the rest
                if lossy:
                    return _unencodable(v, f"its encoder raised {_describe(e)}")
                raise EncodingError(f"cannot store a {_safe_qualname(t)}: its registered "
                                    f"encoder raised {_describe(e)}") from e
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
        if all(_plain_key(k) for k in v):
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
        return _tag("time", _time_payload(v, lossy))
    if isinstance(v, dt.timedelta):
        return _tag("timedelta", [v.days, v.seconds, v.microseconds])
    if isinstance(v, uuid.UUID):
        return _tag("uuid", str(v))
    if isinstance(v, decimal.Decimal):
        return _tag("decimal", str(v))
    if isinstance(v, Opaque):
        if v._verbatim:  # read from a store: written back as it was read
            return {v.tag: v.payload}
        return _tag("opaque", [_tagged(v.tag, lossy), _tagged(v.payload, lossy)])
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        fields = {f.name: _tagged(getattr(v, f.name), lossy) for f in dataclasses.fields(v)}
        return _tag("dataclass", [_qualname(t), fields])
    model_dump = getattr(v, "model_dump", None)
    if callable(model_dump) and hasattr(t, "model_validate"):
        return _tag("pydantic", [_qualname(t), _tagged(model_dump(), lossy)])
    if isinstance(v, BaseException):
        try:
            text = str(v)
        except Exception as e:
            if not lossy:
                raise EncodingError(f"cannot store a {_qualname(t)}: str() of it raised "
                                    f"{_describe(e)}") from e
            return _unencodable(v, f"str() raised {_describe(e)}")
        return _tag("exception", [_qualname(t), _tagged(list(v.args), True), text])
    if isinstance(v, tuple):  # namedtuple: keep the class when it can be found again
        return _tag("namedtuple", [_qualname(t), [_tagged(x, lossy) for x in v]])
    if lossy:
        try:
            text = repr(v)
        except Exception as e:
            return _unencodable(v, f"repr() raised {_describe(e)}")
        return _tag("repr", [_qualname(t), _tagged(text, lossy)])
    raise EncodingError(
        f"cannot store a value of type {_qualname(t)} without changing it: JSON cannot "
        "hold it and runlog has no encoder for it. Convert it to plain data first, or "
        "teach the codec with runlog.codec.register(cls, name, encoder, decoder)."
    )


# --------------------------------------------------------------------- decode


def decode(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse stored JSON and turn tag objects back into the values they stand for.

    Safe on bytes from anyone: it runs no code the application did not :func:`trust`
    or :func:`register` (see the module docstring); a tag it does not rebuild, or whose
    payload is malformed, comes back as an :class:`Opaque` of the stored JSON.

    Raises:
        EncodingError: the JSON is nested too deeply to walk on this call stack.
        orjson.JSONDecodeError: ``data`` is not JSON at all.
    """
    value = orjson.loads(data)
    raw = data if isinstance(data, (bytes, bytearray)) else bytes(str(data), "utf-8")
    if _TAG_MARK not in raw:
        return value
    return untag(value)


def untag(v: Any) -> Any:
    """Rebuild tagged values inside an already parsed JSON structure (as :func:`decode`).

    Raises:
        EncodingError: the structure is nested too deeply to walk on this call stack.
    """
    try:
        return _untag(v)
    except RecursionError as e:  # only forged JSON nests this deep (encode stops at 255)
        raise EncodingError("cannot decode a stored value: it is nested too deeply "
                            "(runlog writes at most 255 levels)") from e


def _untag(v: Any) -> Any:
    t = type(v)
    if t is list:
        return [_untag(x) for x in v]
    if t is not dict:
        return v
    if len(v) == 1:
        ((k, payload),) = v.items()
        if k.startswith(TAG_PREFIX):
            tag = k[len(TAG_PREFIX):]
            try:
                value = _untag_one(tag, payload)
            except RecursionError:
                raise
            except Exception:  # a malformed payload (forged, or a codec bug): keep it
                return _stored_opaque(k, payload)
            return _stored_opaque(k, payload) if value is _KEEP else value
    return {k: _untag(x) for k, x in v.items()}


_KEEP: Any = object()  # _untag_one's answer for "leave this tag as an Opaque"

# Class lookups read namespaces through the builtin descriptors themselves, so no
# module __getattr__, metaclass property or overridden __dict__ ever runs.
_module_dict: Any = vars(types.ModuleType)["__dict__"].__get__
_type_dict: Any = vars(type)["__dict__"].__get__
_type_module: Any = vars(type)["__module__"].__get__
_type_qualname: Any = vars(type)["__qualname__"].__get__
_type_mro: Any = vars(type)["__mro__"].__get__
_exception_dict: Any = vars(BaseException)["__dict__"].__get__
# Builtin exceptions are C code whose constructors only store their arguments.
_BUILTIN_EXCEPTIONS: dict[str, type[BaseException]] = {
    f"builtins:{name}": obj for name, obj in vars(builtins).items()
    if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__name__ == name
}
_BUILTIN_IDS = frozenset(id(c) for c in _BUILTIN_EXCEPTIONS.values())
_SCALARS = frozenset({str, int, float, bool, type(None), bytes, decimal.Decimal, uuid.UUID})


def _find_class(qualname: str) -> type | None:
    """The class ``module:Qual.Name`` names in an already imported module, or None.

    Only dictionary lookups: never an import, never ``getattr``."""
    module_name, sep, path = qualname.partition(":")
    module = sys.modules.get(module_name)
    if not sep or module is None or not issubclass(type(module), types.ModuleType):
        return None
    namespace: Any = _module_dict(module, type(module))
    obj: Any = None
    for part in path.split("."):
        obj = namespace.get(part)
        if not issubclass(type(obj), type):
            return None
        namespace = _type_dict(obj)
    return obj  # type: ignore[no-any-return]


def _same_plain(a: Any, b: Any) -> bool:
    """Equality that runs no user ``__eq__``: builtin scalars and tuples of them."""
    if type(a) is not type(b):
        return False
    if type(a) is tuple:
        return len(a) == len(b) and all(_same_plain(x, y) for x, y in zip(a, b, strict=True))
    return type(a) in _SCALARS and bool(a == b)


def _enum_member(qualname: str, raw_value: Any) -> Any:
    """The existing member of an imported enum with that value, found in the class's own
    value table (the class is never called, so ``_missing_`` and friends never run)."""
    cls = _find_class(qualname)
    if cls is None or not issubclass(type(cls), enum.EnumMeta):
        return _KEEP
    if f"{_type_module(cls)}:{_type_qualname(cls)}" != qualname:  # an alias re-exported
        return _KEEP
    members = _type_dict(cls).get("_value2member_map_")
    if type(members) is not dict:
        return _KEEP
    value = _untag(raw_value)
    for v, member in members.items():
        if _same_plain(v, value) and type(member) is cls:
            return member
    return _KEEP


def _builtin_exception(qualname: str, p: list[Any]) -> Any:
    """A builtin exception, kept only if it encodes back to the very bytes it came from
    (so a forged ``str`` text or an ``OSError`` that would change class stays Opaque)."""
    cls = _BUILTIN_EXCEPTIONS.get(qualname)
    if cls is None or len(p) != 3 or type(p[1]) is not list:
        return _KEEP
    exc = cls(*_untag(p[1]))
    if (type(exc) is not cls or str(exc) != p[2]
            or orjson.dumps(_tagged(list(exc.args), True)) != orjson.dumps(p[1])):
        return _KEEP
    return exc


def _trusted_instance(tag: str, cls: type, p: list[Any]) -> Any:
    """Rebuild an instance of a class the application trusted, by calling its code."""
    match tag:
        case "enum" if issubclass(cls, enum.Enum):
            return cls(_untag(p[1]))
        case "dataclass" if dataclasses.is_dataclass(cls):
            fields = {k: _untag(x) for k, x in p[1].items()}
            init = {f.name for f in dataclasses.fields(cls) if f.init}
            obj = cls(**{k: x for k, x in fields.items() if k in init})
            for k, x in fields.items():
                if k not in init:
                    object.__setattr__(obj, k, x)
            return obj
        case "pydantic" if hasattr(cls, "model_validate"):
            return cls.model_validate(_untag(p[1]))
        case "namedtuple" if issubclass(cls, tuple):
            return cls(*(_untag(x) for x in p[1]))
        case "exception" if issubclass(cls, BaseException):
            return cls(*_untag(p[1]))
    return _KEEP


def _offset_zone(spec: list[Any]) -> dt.timezone:
    offset = dt.timedelta(days=spec[0], seconds=spec[1], microseconds=spec[2])
    return dt.timezone(offset, spec[3]) if len(spec) > 3 else dt.timezone(offset)


def _zone_spec(tz: dt.timezone) -> list[Any] | None:
    """``[days, seconds, microseconds(, name)]`` for a fixed offset ISO text loses: one
    with microseconds (``fromisoformat`` reads a sub-second one as UTC) or a name of
    its own; None when the ISO text keeps it."""
    offset = tz.utcoffset(None)
    name = tz.tzname(None)
    custom = name != dt.timezone(offset).tzname(None)
    if not offset.microseconds and not custom:
        return None
    spec: list[Any] = [offset.days, offset.seconds, offset.microseconds]
    return [*spec, name] if custom else spec


def _datetime_payload(v: dt.datetime, lossy: bool) -> Any:
    """ISO text for naive and fixed-offset datetimes; ``[naive ISO, zone key, fold]`` for
    ``zoneinfo.ZoneInfo`` ones, so the zone (and the fold of a repeated hour) survives;
    ``[naive ISO, offset spec, fold]`` for a fixed offset ISO text cannot keep.
    Other tzinfo classes (pytz, dateutil) cannot be rebuilt without importing their
    code: refused, or stored as their UTC offset when ``lossy``."""
    tz = v.tzinfo
    if tz is None or type(tz) is dt.timezone:
        spec = _zone_spec(tz) if tz is not None else None
        if spec is not None:
            return [v.replace(tzinfo=None).isoformat(), spec, v.fold]
        return v.isoformat() if not v.fold else [v.isoformat(), None, v.fold]
    key = getattr(tz, "key", None)
    if type(tz).__module__ == "zoneinfo" and isinstance(key, str):
        return [v.replace(tzinfo=None).isoformat(), key, v.fold]
    if lossy:
        return v.isoformat()
    raise EncodingError(
        f"cannot store a datetime with tzinfo {type(tz).__module__}.{type(tz).__name__} "
        "losslessly; convert it to zoneinfo.ZoneInfo or a fixed offset (datetime.timezone)")


def _time_payload(v: dt.time, lossy: bool) -> Any:
    """ISO text, or ``[ISO, None | offset spec, fold]`` when that text would lose the
    fold or the offset (the same list form as datetimes')."""
    tz = v.tzinfo
    if tz is not None and type(tz) is not dt.timezone:
        if not lossy:
            raise EncodingError(
                f"cannot store a time with tzinfo {type(tz).__name__} losslessly; "
                "use a fixed offset (datetime.timezone) or a datetime")
        return v.isoformat()
    spec = _zone_spec(tz) if tz is not None else None
    if spec is not None:
        return [v.replace(tzinfo=None).isoformat(), spec, v.fold]
    return v.isoformat() if not v.fold else [v.isoformat(), None, v.fold]


def _with_zone(value: Any, key: Any, fold: int) -> Any:
    if isinstance(key, str):
        import zoneinfo  # the standard library's zone database, not user code

        value = value.replace(tzinfo=zoneinfo.ZoneInfo(key))
    elif key is not None:
        value = value.replace(tzinfo=_offset_zone(key))
    return value.replace(fold=fold)


def _datetime_from(p: Any) -> dt.datetime:
    if isinstance(p, str):
        return dt.datetime.fromisoformat(p)
    text, key, fold = p
    return _with_zone(dt.datetime.fromisoformat(text), key, fold)  # type: ignore[no-any-return]


def _time_from(p: Any) -> dt.time:
    if isinstance(p, str):
        return dt.time.fromisoformat(p)
    text, key, fold = p
    if isinstance(key, str):  # zones are only written for datetimes
        raise ValueError("a time with a zone key")
    return _with_zone(dt.time.fromisoformat(text), key, fold)  # type: ignore[no-any-return]


def _untag_one(tag: str, p: Any) -> Any:
    """The value tag ``$rl:<tag>`` stands for, or ``_KEEP``; may raise on a bad payload
    (the caller keeps it as an Opaque then)."""
    decoder = _registry_by_tag.get(tag)
    if decoder is not None:  # the application registered it: its code is trusted
        value = decoder(_untag(p))
        return _KEEP if isinstance(value, Opaque) else value
    match tag:
        case "float":
            return float(p)
        case "int":
            return int(p)
        case "str":
            return bytes.fromhex(p).decode("utf-8", "surrogatepass")
        case "bytes":
            return base64.b64decode(p, validate=True)
        case "bytearray":
            return bytearray(base64.b64decode(p, validate=True))
        case "tuple":
            return tuple(_untag(x) for x in p)
        case "set":
            return {_untag(x) for x in p}
        case "frozenset":
            return frozenset(_untag(x) for x in p)
        case "dict":
            return {_untag(k): _untag(x) for k, x in p}
        case "datetime":
            return _datetime_from(p)
        case "date":
            return dt.date.fromisoformat(p)
        case "time":
            return _time_from(p)
        case "timedelta":
            return dt.timedelta(days=p[0], seconds=p[1], microseconds=p[2])
        case "uuid":
            return uuid.UUID(p)
        case "decimal":
            return decimal.Decimal(p)
        case "opaque":  # an Opaque some code made (not one read from a store)
            made_tag, payload = p
            return Opaque(_untag(made_tag), _untag(payload))
    if type(p) is not list or not p or type(p[0]) is not str:
        return _KEEP
    cls = _trusted.get(p[0])
    if cls is not None:
        return _trusted_instance(tag, cls, p)
    if tag == "exception":
        return _builtin_exception(p[0], p)
    if tag == "enum" and len(p) == 2:
        return _enum_member(p[0], p[1])
    return _KEEP
