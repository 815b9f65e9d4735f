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
import warnings
from typing import Any

import orjson
from langchain_core._api.beta_decorator import LangChainBetaWarning
from langchain_core.load import load
from langchain_core.load.serializable import Serializable
from langchain_core.runnables.utils import AddableDict

from runlog import Opaque, codec
from runlog_langchain.fast_dumpd import dumpd

__all__ = ["register"]

_done = False


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_plain_shapes: set[tuple[Any, ...]] = set()  # class path + kwargs names known to be plain


def _encode_lc(obj: Any) -> Any:
    """``dumpd(obj)``; pre-encoded when it is flat (see :func:`_is_flat`)."""
    d = dumpd(obj)
    if _is_flat(d):
        try:
            return orjson.Fragment(orjson.dumps(d))
        except orjson.JSONEncodeError:  # a lone surrogate: let the codec tag it
            pass
    return d


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
            return load(payload, allowed_objects="core")
    except Exception:  # a class LangChain no longer has, or one outside langchain-core
        return Opaque("$rl:lc", payload)


def register() -> None:
    """Register LangChain's serialisable types and ``AddableDict`` with runlog's codec."""
    global _done
    if _done:
        return
    codec.register(Serializable, "lc", _encode_lc, _decode_lc)
    codec.register(AddableDict, "lc_addable", dict, AddableDict)
    _done = True
