"""JSON Patch (RFC 6902) deltas between two successive graph states.

LangGraph's ``values`` mode yields the whole state after every step; an agent's state
grows by a message or two a step, so storing each copy would make a conversation of
*n* steps cost O(n²) bytes. :func:`diff` returns the operations that turn the previous
state into the new one, and :func:`runlog.reducers.patch.apply_ops` (the project's
in-place applier) folds them back on replay.

The rules are chosen for what graph states look like: dicts are compared key by key
(when patching keeps the new key order; else the dict is replaced whole), a
list is compared index by index (so a list that grew by one item costs one ``add`` of
that item), and any other value is a leaf compared with ``is`` first, then ``==`` with
the same exact type (``1 == True`` must not hide a change). A value whose ``==`` raises
is treated as changed. Leaves are shared, not copied: the operations hold the new
state's own objects, which the codec encodes right away.
"""

from __future__ import annotations

from typing import Any

__all__ = ["diff", "escape"]


def escape(token: str) -> str:
    """A dict key as one JSON Pointer reference token."""
    return token.replace("~", "~0").replace("/", "~1") if ("~" in token or "/" in token) \
        else token


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    try:
        return bool(a == b)
    except Exception:
        return False


def _same_order(old: dict[Any, Any], new: dict[Any, Any]) -> bool:
    """String keys only, and patching keeps ``new``'s key order: its keys are the kept
    keys of ``old`` in their order, then the added ones (an ``add`` appends a key)."""
    if not all(type(k) is str for k in new) or not all(type(k) is str for k in old):
        return False
    kept = [k for k in old if k in new]
    return list(new)[:len(kept)] == kept


def diff(old: Any, new: Any) -> list[dict[str, Any]]:
    """The operations that turn ``old`` into ``new`` (``[]`` when they are equal)."""
    ops: list[dict[str, Any]] = []
    _diff(old, new, "", ops)
    return ops


def _diff(old: Any, new: Any, path: str, ops: list[dict[str, Any]]) -> None:
    if old is new:
        return
    to, tn = type(old), type(new)
    if to is dict and tn is dict and _same_order(old, new):
        for k in old:
            if k not in new:
                ops.append({"op": "remove", "path": f"{path}/{escape(k)}"})
        for k, v in new.items():
            p = f"{path}/{escape(k)}"
            if k in old:
                _diff(old[k], v, p, ops)
            else:
                ops.append({"op": "add", "path": p, "value": v})
        return
    if to is list and tn is list:
        common = min(len(old), len(new))
        for i in range(common):
            _diff(old[i], new[i], f"{path}/{i}", ops)
        for i in range(len(old) - 1, common - 1, -1):
            ops.append({"op": "remove", "path": f"{path}/{i}"})
        for v in new[common:]:
            ops.append({"op": "add", "path": f"{path}/-", "value": v})
        return
    if not _same(old, new):
        ops.append({"op": "replace", "path": path, "value": new})
