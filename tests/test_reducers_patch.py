"""The in-place JSON Patch applier against python-jsonpatch (the reference)."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runlog.reducers.patch import PatchError, apply_ops, parse_pointer, structural_copy

KEYS = st.sampled_from(["a", "b", "c", "a/b", "m~n", "0", "1"])
LEAF = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3))
JSON = st.recursive(LEAF, lambda c: st.one_of(st.lists(c, max_size=3),
                                               st.dictionaries(KEYS, c, max_size=3)),
                    max_leaves=8)


def _escape(k: str) -> str:
    return k.replace("~", "~0").replace("/", "~1")


def _paths(doc: Any, prefix: str = "") -> list[str]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, f"{prefix}/{_escape(k)}")
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, f"{prefix}/{i}")
    return out


@st.composite
def doc_and_ops(draw: st.DrawFn) -> tuple[Any, list[dict[str, Any]]]:
    doc = draw(st.dictionaries(KEYS, JSON, max_size=4))
    ops: list[dict[str, Any]] = []
    shadow = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 6))):
        paths = _paths(shadow)
        target = draw(st.sampled_from(paths))
        kind = draw(st.sampled_from(["add", "replace", "remove", "move", "copy", "test"]))
        suffix = draw(st.sampled_from(["", "/-", "/0", "/new", "/zz/q"]))
        path = target + suffix if kind == "add" else target
        op: dict[str, Any] = {"op": kind, "path": path}
        if kind in ("add", "replace", "test"):
            op["value"] = draw(JSON)
        if kind in ("move", "copy"):
            op["from"] = draw(st.sampled_from(paths))
        ops.append(op)
        try:
            shadow = jsonpatch.apply_patch(shadow, [op])
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException,
                TypeError, KeyError, IndexError):
            break
    return doc, ops


def _reference(doc: Any, ops: list[dict[str, Any]]) -> tuple[str, Any]:
    try:
        return "ok", jsonpatch.apply_patch(copy.deepcopy(doc), copy.deepcopy(ops))
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError,
            KeyError, IndexError) as e:
        return "error", type(e).__name__


@given(doc_and_ops())
def test_applier_matches_jsonpatch(case: tuple[Any, list[dict[str, Any]]]) -> None:
    doc, ops = case
    kind, want = _reference(doc, ops)
    frozen_ops = copy.deepcopy(ops)
    try:
        got = apply_ops(copy.deepcopy(doc), ops)
    except PatchError:
        assert kind == "error", f"we refused {ops} which jsonpatch applies -> {want}"
        return
    assert kind == "ok", f"jsonpatch refuses {ops} ({want}) but we gave {got}"
    assert got == want
    assert ops == frozen_ops  # the ops (and their values) are never mutated


def test_values_are_copied_structurally_and_leaves_shared() -> None:
    leaf = object()
    value = {"list": [1, {"x": leaf}]}
    doc = apply_ops({}, [{"op": "add", "path": "/v", "value": value}])
    apply_ops(doc, [{"op": "add", "path": "/v/list/-", "value": 2}])
    assert value == {"list": [1, {"x": leaf}]}
    assert doc["v"]["list"][1]["x"] is leaf


def test_pointer_escapes_and_errors() -> None:
    assert parse_pointer("") == []
    assert parse_pointer("/a~1b/m~0n") == ["a/b", "m~n"]
    with pytest.raises(PatchError, match="must start"):
        parse_pointer("a")
    with pytest.raises(PatchError, match="not found"):
        apply_ops({"logs": {}}, [{"op": "add", "path": "/logs/a/b", "value": 1}])
    with pytest.raises(PatchError, match="unknown JSON Patch operation"):
        apply_ops({}, [{"op": "frobnicate", "path": ""}])
    assert structural_copy("s") == "s"
