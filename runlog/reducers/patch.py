"""A small in-place JSON Patch (RFC 6902) applier for folding run-log patches.

Why not ``jsonpatch.apply_patch``: with ``in_place=False`` it deep-copies the whole
document for every patch, which is what makes LangChain's ``RunLog +`` quadratic. Here
every operation mutates the document in place, so folding N patches costs the size of
the patches, not N times the size of the state.

Aliasing rule (the reason this is safe): a container (``dict``/``list``, subclasses
included) taken from an operation's ``value`` is copied structurally before it is put
into the document, and only those copies are ever mutated. The operations themselves,
and any leaf objects they carry (strings, messages, Documents, ...), are never changed,
so the same ops can be yielded to a caller, kept in a cumulative ``RunLog.ops`` and
applied again elsewhere. Leaves are shared by reference, as jsonpatch shares them.

Semantics follow python-jsonpatch (the reference; ``tests/test_reducers_patch.py``
checks this module against it with hypothesis-generated patches): ``add`` on an
existing member replaces it, ``-`` appends to a list, list indexes are decimal without
leading zeros, ``replace``/``remove``/``move`` need an existing target, and ``""`` is
the whole document. Failures raise :class:`PatchError` naming the operation.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["PatchError", "apply_op", "apply_ops", "parse_pointer", "structural_copy"]


class PatchError(ValueError):
    """An operation cannot be applied (missing member, bad index, bad pointer)."""


@functools.lru_cache(maxsize=4096)
def _tokens(path: str) -> tuple[str, ...]:
    if path == "":
        return ()
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer {path!r} must start with '/'")
    return tuple(t.replace("~1", "/").replace("~0", "~") if "~" in t else t
                 for t in path[1:].split("/"))


def parse_pointer(path: str) -> list[str]:
    """Split a JSON Pointer into unescaped reference tokens (``""`` is the root).

    Parsed pointers are cached: a fold applies the same few paths over and over.
    """
    return list(_tokens(path))


_LEAVES = frozenset({str, int, float, bool, type(None), bytes})


def structural_copy(value: Any) -> Any:
    """Copy dict/list containers recursively (keeping their types), share the leaves."""
    t = type(value)
    if t in _LEAVES:
        return value
    if t is dict:
        return {k: structural_copy(v) for k, v in value.items()}
    if t is list:
        return [structural_copy(v) for v in value]
    if isinstance(value, dict):
        c = copy.copy(value)
        for k, v in value.items():
            c[k] = structural_copy(v)
        return c
    if isinstance(value, list):
        lc = copy.copy(value)
        lc[:] = [structural_copy(v) for v in value]
        return lc
    return value


def _index(token: str, size: int, *, allow_end: bool, path: str) -> int:
    if token == "-":
        if allow_end:
            return size
        raise PatchError(f"'-' is not a valid list index here ({path!r})")
    if not token.isdigit() or not token.isascii() or (len(token) > 1 and token[0] == "0"):
        raise PatchError(f"{token!r} is not a list index ({path!r})")
    i = int(token)
    if i > size or (i == size and not allow_end):
        raise PatchError(f"list index {i} is out of range ({path!r})")
    return i


def _walk(doc: Any, tokens: tuple[str, ...], path: str) -> Any:
    """The container that holds the last token."""
    cur = doc
    for i in range(len(tokens) - 1):
        tok = tokens[i]
        if type(cur) is dict or isinstance(cur, dict):
            if tok not in cur:
                raise PatchError(f"member {tok!r} not found ({path!r})")
            cur = cur[tok]
        elif isinstance(cur, list):
            cur = cur[_index(tok, len(cur), allow_end=False, path=path)]
        else:
            raise PatchError(f"cannot descend into {type(cur).__name__} at {tok!r} ({path!r})")
    return cur


def _get(doc: Any, path: str) -> Any:
    tokens = _tokens(path)
    if not tokens:
        return doc
    parent = _walk(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"member {last!r} not found ({path!r})")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(last, len(parent), allow_end=False, path=path)]
    raise PatchError(f"cannot index {type(parent).__name__} ({path!r})")


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _tokens(path)
    if not tokens:
        return value
    parent = _walk(doc, tokens, path)
    last = tokens[-1]
    if type(parent) is list and last == "-":  # the hot path: appending a chunk
        parent.append(value)
    elif isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(last, len(parent), allow_end=True, path=path), value)
    else:
        raise PatchError(f"cannot add into {type(parent).__name__} ({path!r})")
    return doc


def _remove(doc: Any, path: str) -> Any:
    tokens = _tokens(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _walk(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"member {last!r} not found ({path!r})")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(last, len(parent), allow_end=False, path=path)]
    else:
        raise PatchError(f"cannot remove from {type(parent).__name__} ({path!r})")
    return doc


def _replace(doc: Any, path: str, value: Any) -> Any:
    tokens = _tokens(path)
    if not tokens:
        return value
    parent = _walk(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"member {last!r} not found ({path!r})")
        parent[last] = value
    elif isinstance(parent, list):
        parent[_index(last, len(parent), allow_end=False, path=path)] = value
    else:
        raise PatchError(f"cannot replace inside {type(parent).__name__} ({path!r})")
    return doc


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: ``True`` is not ``1`` (jsonpatch's ``test`` rule)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def apply_op(doc: Any, op: Mapping[str, Any]) -> Any:
    """Apply one operation to ``doc`` in place; returns the (possibly new) document."""
    try:
        kind = op["op"]
        path = op["path"]
    except (KeyError, TypeError):
        raise PatchError(f"not a JSON Patch operation: {op!r}") from None
    if kind == "add":
        return _add(doc, path, structural_copy(op["value"]))
    if kind == "replace":
        return _replace(doc, path, structural_copy(op["value"]))
    if kind == "remove":
        return _remove(doc, path)
    if kind == "move":
        src = op["from"]
        if path != src and path.startswith(src + "/"):
            raise PatchError(f"cannot move {src!r} into its own child {path!r}")
        value = _get(doc, src)
        if path == src:
            return doc
        doc = _remove(doc, src)
        return _add(doc, path, value)
    if kind == "copy":
        return _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
    if kind == "test":
        if not _json_equal(_get(doc, path), op["value"]):
            raise PatchError(f"test failed at {path!r}")
        return doc
    raise PatchError(f"unknown JSON Patch operation {kind!r}")


def apply_ops(doc: Any, ops: Iterable[Mapping[str, Any]]) -> Any:
    """Apply operations in order, in place; returns the resulting document."""
    for op in ops:
        doc = apply_op(doc, op)
    return doc
