"""``dumpd``: LangChain's ``langchain_core.load.dumpd``, giving the same dicts, faster.

Recording a chat model's stream encodes one ``AIMessageChunk`` per token, and
LangChain's ``dumpd`` spends about 60 µs on each (it walks the MRO for secrets and
deprecated attributes, looks up pydantic field metadata through properties, and
re-serialises the result), more than the whole recording budget per token. This
module does the same walk with everything that depends only on the class (the
``lc_id``, field defaults, which ``lc_attributes`` getters apply, the absence of
secrets) worked out once per class, so only the per-object work remains.

Equal output is the contract, because the stored bytes of a chunk must not depend on
which path encoded it: a hypothesis test compares the two on generated messages,
documents, generations and prompt values. The fast path covers a class only when
nothing it skips could matter: ``to_json`` is LangChain's own, no class declares
``lc_secrets`` (secrets are replaced by markers, which this module does not do) or a
deprecated attribute, and every ``lc_attributes`` is a plain property. Anything else
goes to LangChain's ``dumpd``. So does everything when the LangChain or pydantic
functions mirrored here are not the ones this module was written against (their
source text is fingerprinted at import): a newer LangChain may serialise differently,
and then it is LangChain's output that counts.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Callable
from typing import Any

from langchain_core.load import _validation, serializable
from langchain_core.load import dump as _dump
from langchain_core.load.serializable import Serializable, to_json_not_implemented
from pydantic import BaseModel

__all__ = ["ENABLED", "dumpd"]

log = logging.getLogger("runlog_langchain")

# sha256 of the source of each function mirrored below, as in langchain-core 1.7.2 and
# pydantic 2.14; a change in any of them turns the fast path off (see module docstring)
_MIRRORED: dict[str, tuple[Callable[..., Any], str]] = {
    "Serializable.to_json": (Serializable.to_json, "3b9c4f1d"),
    "_is_field_useful": (serializable._is_field_useful, "06c8c560"),
    "_try_neq_default": (serializable._try_neq_default, "20a8d923"),
    "_serialize_value": (_validation._serialize_value, "1413fa4d"),
    "_serialize_lc_object": (_validation._serialize_lc_object, "b3268b28"),
    "_needs_escaping": (_validation._needs_escaping, "2b2367e3"),
    "dumpd": (_dump.dumpd, "31810f4b"),
    "BaseModel.__iter__": (BaseModel.__iter__, "0c32e572"),
}


def _fingerprint(fn: Callable[..., Any]) -> str:
    return hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:8]


def _sources_match() -> bool:
    try:
        changed = [name for name, (fn, want) in _MIRRORED.items()
                   if _fingerprint(fn) != want]
    except (OSError, TypeError):  # no source on disk (zipapp, stripped install)
        changed = ["<source unavailable>"]
    if changed:
        log.debug("runlog_langchain: LangChain's serialisation changed (%s); "
                  "using langchain_core.load.dumpd", ", ".join(changed))
    return not changed


ENABLED = _sources_match()
"""Whether :func:`dumpd` takes the fast path on this LangChain version."""


def _known_projections() -> dict[Callable[..., Any], frozenset[str]]:
    # ``lc_attributes`` getters that only return some of the object's own fields, as
    # read from their source (fingerprinted like the functions above): the encoding
    # templates of runlog_langchain.codec need not call them on every chunk
    from langchain_core.messages import AIMessage, AIMessageChunk

    calls = frozenset({"tool_calls", "invalid_tool_calls"})
    known = {AIMessage: ("35948c93", calls), AIMessageChunk: ("d8e83cb9", calls)}
    out: dict[Callable[..., Any], frozenset[str]] = {}
    for cls, (want, fields) in known.items():
        fget = cls.__dict__["lc_attributes"].fget
        try:
            if _fingerprint(fget) == want:
                out[fget] = fields
        except (OSError, TypeError):
            pass
    return out


PROJECTIONS = _known_projections() if ENABLED else {}
"""Getters known to return ``{name: self.name, ...}`` for the listed fields only."""

_ESCAPED = _validation._LC_ESCAPED_KEY
_JSON_KEY_TYPES = (str, int, float, bool, type(None))
_JSON_LEAF_TYPES = (str, int, float, bool, type(None))
_RAISES: Any = object()
_Plan = Callable[[Any], dict[str, Any]]
_plans: dict[type, _Plan | None] = {}
getters: dict[type, tuple[Callable[[Any], dict[str, Any]], ...]] = {}
"""The ``lc_attributes`` getters a class's plan calls (for :mod:`runlog_langchain.codec`)."""


def dumpd(obj: Any) -> Any:
    """``langchain_core.load.dumpd(obj)``, the same value, computed faster."""
    if not ENABLED:
        return _dump.dumpd(obj)
    return _value(_dump._dump_pydantic_models(obj))


def _value(v: Any) -> Any:
    """``_validation._serialize_value`` with :func:`_lc_object` for LangChain objects."""
    t = type(v)
    if t is str or t is int or t is float or t is bool or v is None:
        return v
    if t is dict:
        return _dict(v)
    if t is list or t is tuple:
        return [_value(x) for x in v]
    plan = _plans.get(t)
    if plan is not None:
        return plan(v)
    if isinstance(v, Serializable):
        return _lc_object(v)
    if isinstance(v, dict):
        return _dict(v)
    if isinstance(v, (list, tuple)):
        return [_value(x) for x in v]
    if isinstance(v, _JSON_LEAF_TYPES):
        return v
    return to_json_not_implemented(v)


def _dict(d: dict[Any, Any]) -> Any:
    for k in d:
        if not isinstance(k, _JSON_KEY_TYPES):
            return to_json_not_implemented(d)
    if "lc" in d or (len(d) == 1 and _ESCAPED in d):
        return {_ESCAPED: d}
    return {k: _value(x) for k, x in d.items()}


def _lc_object(obj: Serializable) -> Any:
    cls = type(obj)
    try:
        plan = _plans[cls]
    except KeyError:
        plan = _plans[cls] = _make_plan(cls)
    if plan is None:
        return _validation._serialize_lc_object(obj)
    return plan(obj)


def _make_plan(cls: type[Serializable]) -> _Plan | None:
    """The per-object part of ``to_json`` + ``_serialize_lc_object`` for ``cls``, or
    ``None`` when the class needs something this module does not mirror."""
    try:
        if getattr(cls, "to_json", None) is not Serializable.to_json:
            return None
        if not cls.is_lc_serializable():
            return None
        mro = cls.__mro__
        upto = mro.index(Serializable)
        if any(hasattr(c, "lc_namespace") or hasattr(c, "lc_serializable")
               for c in mro[:upto]):
            return None  # to_json raises for these; let it
        if any("lc_secrets" in c.__dict__ for c in mro[:upto]):
            return None
        # to_json merges ``super(c, self).lc_attributes`` for self and each class up to
        # Serializable: the getter found from each of those starting points, in order
        getters_: list[Callable[[Any], dict[str, Any]]] = []
        for start in range(upto + 1):
            for c in mro[start:]:
                if "lc_attributes" in c.__dict__:
                    prop = c.__dict__["lc_attributes"]
                    break
            else:  # pragma: no cover - Serializable defines it
                return None
            if not isinstance(prop, property) or prop.fget is None:
                return None
            if prop is Serializable.__dict__["lc_attributes"]:
                continue  # always {}
            if getters_ and getters_[-1] is prop.fget:
                continue  # updating with the same dict again changes nothing
            getters_.append(prop.fget)
        lc_id = list(cls.lc_id())
        required: set[str] = set()
        # optional field -> (the type its factory makes or None, default, FieldInfo)
        optional: dict[str, tuple[type | None, Any, Any]] = {}
        for name, info in cls.model_fields.items():
            if info.exclude:
                continue
            if info.is_required():
                required.add(name)
                continue
            try:
                default = serializable._get_field_default(info)
            except Exception:
                default = _RAISES
            factory = info.default_factory
            optional[name] = (factory if factory in (dict, list) else None, default, info)
        # ``getattr(self, k, v)`` in to_json differs from ``v`` only when a class
        # attribute of that name (a property, say) shadows the field
        shadowed = frozenset(k for k in (*required, *optional)
                             if any(k in c.__dict__ for c in mro))
    except Exception:
        return None
    try_neq_default = serializable._try_neq_default
    getters[cls] = tuple(getters_)

    def plan(obj: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for k, v in obj.__dict__.items():
            if k not in required:
                f = optional.get(k)
                if f is None:
                    continue  # private, extra or excluded: to_json skips them too
                try:
                    falsy = not v
                except Exception:  # _is_field_useful: such a value counts as falsy
                    falsy = True
                if falsy:
                    made_by, default, info = f
                    if made_by is not None and isinstance(v, made_by):
                        continue  # an empty dict/list from a dict/list factory
                    # a raising default counts as changed (as in _try_neq_default)
                    if default is not _RAISES and (
                            (v is None and default is None) or not try_neq_default(v, info)):
                        continue
            kwargs[k] = getattr(obj, k, v) if shadowed and k in shadowed else v
        for get in getters_:
            kwargs.update(get(obj))
        out = {}
        for k, v in kwargs.items():
            t = type(v)
            out[k] = v if t is str or v is None or t is bool else _value(v)
        return {"lc": 1, "type": "constructor", "id": list(lc_id), "kwargs": out}

    return plan
