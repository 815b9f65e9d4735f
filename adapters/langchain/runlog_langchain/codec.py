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

import warnings
from typing import Any

from langchain_core._api.beta_decorator import LangChainBetaWarning
from langchain_core.load import dumpd, load
from langchain_core.load.serializable import Serializable
from langchain_core.runnables.utils import AddableDict

from runlog import Opaque, codec

__all__ = ["register"]

_done = False


def _encode_lc(obj: Any) -> Any:
    return dumpd(obj)


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
