"""Teach runlog's codec LangChain's objects, so they are stored and read back exactly.

Every ``langchain_core.load.serializable.Serializable`` (messages and their chunks,
``Document``, ``ChatPromptValue``/``StringPromptValue``, ``Generation`` and
``GenerationChunk``, ...) is stored as ``{"$rl:lc": dumpd(obj)}`` and rebuilt with
``langchain_core.load.load`` restricted to langchain-core's own classes; an object whose
class LangChain cannot serialise (``type: "not_implemented"``) or load comes back as a
:class:`runlog.Opaque` that re-encodes to the same bytes. ``AddableDict`` (what
``RunnableParallel``/``RunnableAssign`` stream) is stored as ``{"$rl:lc_addable": {...}}``
so that ``+`` keeps merging its chunks on replay.

:func:`register` runs when :mod:`runlog_langchain` is imported; it is idempotent.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson
from langchain_core import exceptions as lc_exceptions
from langchain_core._api.beta_decorator import LangChainBetaWarning
from langchain_core.language_models.fake_chat_models import FakeListChatModelError
from langchain_core.load import load
from langchain_core.load.serializable import Serializable
from langchain_core.outputs import ChatGeneration
from langchain_core.runnables.utils import AddableDict

from runlog import Opaque, codec
from runlog_langchain import fast_dumpd
from runlog_langchain.fast_dumpd import dumpd

__all__ = ["encode_chunk", "register"]

_done = False


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_plain_shapes: set[tuple[Any, ...]] = set()  # class path + kwargs names known to be plain


def _encode_lc(obj: Any) -> Any:
    """``dumpd(obj)``; pre-encoded when it is flat (see :func:`_is_flat`), from the
    class's :class:`_Template` when the object matches it."""
    cls = type(obj)
    t = _templates.get(cls)
    if t is not None:
        raw = _fill(t, obj)
        if raw is not None:
            return orjson.Fragment(raw)
    d = dumpd(obj)
    if _is_flat(d):
        try:
            raw = orjson.dumps(d)
        except orjson.JSONEncodeError:  # a lone surrogate: let the codec tag it
            return d
        if fast_dumpd.ENABLED and fast_dumpd._plans.get(cls) is not None:
            _remember(cls, obj, d, raw)
        return orjson.Fragment(raw)
    return d


class _Template(NamedTuple):
    """The encoding of one streamed object, with holes for its required text fields.

    A chat model streams chunks that differ only in ``content``: the same class, the
    same ``id``, the same empty containers. Their ``dumpd`` is the same bytes but for
    that text, so the bytes around it are kept per class and a chunk that matches is
    encoded by splicing its text in (about 2 µs instead of 6 µs per token). *Matches*
    is checked with C-speed comparisons that are exact for the values kept: every
    other ``__dict__`` value, in the same key order, of the same exact type, and ``==``
    to the kept one, which is only ever a ``str``, ``int``, ``bool``, ``None`` or an
    empty ``dict``/``list`` (no ``1 == 1.0 == True`` or ``0.0 == -0.0`` can slip
    through); the ``lc_attributes`` getters' results likewise, item by item. The
    fields spliced in are required ones (``dumpd`` writes them whatever their value)
    holding an exact ``str``. The hypothesis test in ``test_fast_dumpd.py`` encodes
    generated sequences of objects both ways and compares the bytes.
    """

    keys: tuple[str, ...]  # the object's __dict__ keys, in order
    pick: Callable[[dict[str, Any]], tuple[Any, ...]]  # the values that must match
    values: tuple[Any, ...]
    types: tuple[type, ...]
    # each lc_attributes getter, the items it gave and their types
    checks: tuple[tuple[Callable[[Any], dict[str, Any]], tuple[tuple[str, Any], ...],
                        tuple[type, ...]], ...]
    slots: tuple[str, ...]  # the fields spliced in, in the order they are written
    parts: tuple[bytes, ...]  # the bytes around them: len(slots) + 1
    # the same in the codec's ``$rl:lc`` tag (encode_chunk): one splice per chunk, not
    # a splice and then a %-format of the ~300 bytes into the tag
    tagged: tuple[bytes, ...]


_templates: dict[type, _Template] = {}
_KEPT = (str, int, bool, type(None))


def _fill(t: _Template, obj: Any, parts: tuple[bytes, ...] | None = None) -> bytes | None:
    """``obj``'s bytes from its template ``t`` (``t.parts``, or the ``parts`` given:
    ``t.tagged``), or None when it does not match."""
    d = obj.__dict__
    if tuple(d) != t.keys:
        return None
    values = t.pick(d)
    try:  # a value's own __eq__ may raise (a numpy array's does): no match then
        if values != t.values or tuple(map(type, values)) != t.types:
            return None
        for get, got, types in t.checks:
            g = get(obj)
            if tuple(g.items()) != got or tuple(map(type, g.values())) != types:
                return None
    except Exception:
        return None
    if parts is None:
        parts = t.parts
    if len(parts) == 2:  # the usual case: one text field
        v = d[t.slots[0]]
        if type(v) is not str:
            return None
        try:
            return parts[0] + orjson.dumps(v) + parts[1]  # raises on a lone surrogate
        except orjson.JSONEncodeError:
            return None
    out = [parts[0]]
    for i, name in enumerate(t.slots, 1):
        v = d[name]
        if type(v) is not str:
            return None
        try:
            out.append(orjson.dumps(v))
        except orjson.JSONEncodeError:
            return None
        out.append(parts[i])
    return b"".join(out)


_LC_OPEN = b'{"' + codec.TAG_PREFIX.encode() + b'lc":'  # the tag around dumpd's bytes
_LC_CLOSE = b"}"


def encode_chunk(obj: Any) -> bytes | None:
    """``codec.encode(obj)`` for a streamed object that fits its class's
    :class:`_Template`, without the codec's dispatch (half the cost of a token's chunk):
    the template's bytes in the ``$rl:lc`` tag, exactly what the codec writes for it
    (:func:`_encode_lc`'s fragment in the tag of its registration). ``None`` when the
    object does not fit, or the codec would not give it to :func:`_encode_lc` (its class
    not yet resolved, or registered otherwise): then the caller encodes it the usual way.
    """
    cls = type(obj)
    t = _templates.get(cls)
    if t is None:
        return None
    reg = codec.registration(cls)
    if reg is None or reg[1] is not _encode_lc or reg[0] != "lc":
        return None
    return _fill(t, obj, t.tagged)


def _remember(cls: type, obj: Any, d: dict[str, Any], raw: bytes) -> None:
    """Make ``obj``'s :class:`_Template` the one of its class, when it can have one."""
    if isinstance(obj, ChatGeneration):
        return  # dumpd may rewrite these first (``_dump_pydantic_models``)
    fields = getattr(cls, "model_fields", {})
    kwargs = d["kwargs"]
    slots, others = [], []
    for k, v in obj.__dict__.items():
        if (type(v) is str and k in fields and fields[k].is_required()
                and kwargs.get(k) is v):
            slots.append(k)
        elif type(v) in _KEPT or (type(v) in (dict, list) and not v):
            others.append(k)
        else:
            return
    # getters known to return some of the fields compared anyway need no call per
    # chunk (checked here to return those very objects); the others are compared
    getters = []
    for get in fast_dumpd.getters.get(cls, ()):
        fields = fast_dumpd.PROJECTIONS.get(get)
        if fields is not None and fields <= set(others):
            items = get(obj)
            if set(items) == fields and all(items[k] is obj.__dict__[k] for k in fields):
                continue
        getters.append(get)
    got = tuple(tuple(get(obj).items()) for get in getters)
    if not all(type(v) in _KEPT or (type(v) in (dict, list) and not v)
               for items in got for _, v in items):
        return
    marks = {k: f"\x00runlog-slot-{i}\x00" for i, k in enumerate(slots)}
    holed = orjson.dumps({**d, "kwargs": {k: marks.get(k, v) for k, v in kwargs.items()}})
    where = {}
    for k, m in marks.items():
        mark = orjson.dumps(m)
        if holed.count(mark) != 1:
            return
        where[k] = (holed.index(mark), mark)
    order = sorted(slots, key=lambda k: where[k][0])
    parts, rest = [], holed
    for k in order:
        before, _, rest = rest.partition(where[k][1])
        parts.append(before)
    parts.append(rest)
    pick: Callable[[dict[str, Any]], tuple[Any, ...]]
    if len(others) >= 2:
        pick = operator.itemgetter(*others)
    else:
        def pick(dd: dict[str, Any], ks: tuple[str, ...] = tuple(others)) -> tuple[Any, ...]:
            return tuple(dd[k] for k in ks)
    values = pick(obj.__dict__)
    checks = tuple((get, items, tuple(type(v) for _, v in items))
                   for get, items in zip(getters, got, strict=True))
    tagged = [*parts]
    tagged[0] = _LC_OPEN + tagged[0]
    tagged[-1] += _LC_CLOSE
    t = _Template(tuple(obj.__dict__), pick, values, tuple(map(type, values)), checks,
                  tuple(order), tuple(parts), tuple(tagged))
    if _fill(t, obj) == raw:  # the template must give the very bytes of the walk
        _templates[cls] = t


def _is_flat(d: Any) -> bool:
    """True for a serialised object whose kwargs are all leaves or empty containers,
    each of a kind runlog's codec writes as it is (exact ``str``, ``bool``, ``None``,
    64-bit ``int``, finite ``float``; ``runlog.codec._is_plain`` is the rule): what a
    streamed message chunk usually is. Such a dict needs no walk by the codec; the
    tests compare the bytes of both paths. Strings are left to orjson, which refuses
    lone surrogates (the caller then falls back to the walk)."""
    if type(d) is not dict or d.get("type") != "constructor":
        return False
    kwargs = d["kwargs"]
    shape = (*d["id"], *kwargs)  # the class path and the kwargs' names
    if shape not in _plain_shapes:
        if not all(type(k) is str and not k.startswith(codec.TAG_PREFIX) for k in shape):
            return False
        if len(_plain_shapes) < 1024:
            _plain_shapes.add(shape)
    for v in kwargs.values():
        t = type(v)
        if t is str or t is bool or v is None:
            continue
        if t is int:
            if not _INT64_MIN <= v <= _INT64_MAX:
                return False
        elif t is float:
            if not math.isfinite(v):
                return False
        elif (t is list or t is dict) and not v:
            continue
        else:
            return False
    return len(d) == 4


def _decode_lc(payload: Any) -> Any:
    if not (isinstance(payload, dict) and payload.get("type") == "constructor"):
        return Opaque("$rl:lc", payload)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LangChainBetaWarning)
            # langchain-core's allowlist: no class outside it is imported or built,
            # and a forged "secret" node is never filled from the environment
            return load(payload, allowed_objects="core", secrets_from_env=False)
    except Exception:  # a class LangChain no longer has, or one outside langchain-core
        return Opaque("$rl:lc", payload)


def register() -> None:
    """Register LangChain's serialisable types and ``AddableDict`` with runlog's codec."""
    global _done
    if _done:
        return
    codec.register(Serializable, "lc", _encode_lc, _decode_lc)
    codec.register(AddableDict, "lc_addable", dict, AddableDict)
    # langchain-core's own exceptions, so a replayed failure keeps its class; the reader
    # trusts langchain-core already (its loader builds the messages)
    for obj in [*vars(lc_exceptions).values(), FakeListChatModelError]:
        if (isinstance(obj, type) and issubclass(obj, BaseException)
                and obj.__module__.startswith("langchain_core.")):
            codec.trust(obj)
    _done = True
