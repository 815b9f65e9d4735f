"""The run page's readable content, its time travel and the compare view.

Three answers of the JSON API, all built from the **stored JSON** of values (tags not
decoded) and turned into :mod:`runlog.content` view nodes, so the page shows chat
messages, prompts and documents rather than ``$rl:lc`` constructor trees, while the
events it folds stay the stored bytes (its "raw" toggle shows those):

* :func:`run_content`: each run of a subtree, its inputs and outputs, readable;
* :func:`state_at`: the run's LangChain ``RunState`` as of any seq (``Store.state_at``),
  for the page's scrubber;
* :func:`compare`: :func:`runlog.diff.diff` of two runs with both sides' values per
  aligned run, for the side-by-side view.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runlog import codec, content
from runlog.api import Store
from runlog.diff import RunTreeState, diff
from runlog.web.model import MODEL_TYPES, run_values

__all__ = ["compare", "run_content", "state_at"]


def _stored(value: Any) -> Any:
    """A value read through the codec, back in its stored JSON form (an ``Opaque`` —
    a tag the reader does not trust — encodes to the very bytes it was read from)."""
    return codec.loads_plain(codec.encode(value, lossy=True))


MAX_RUNS = 1000


def run_content(store: Store, run_id: str, only: Sequence[str] = ()) -> dict[str, Any]:
    """``{"runs": {run_id: {"inputs", "outputs", "usage"}}}`` for a run's subtree.

    ``inputs`` and ``outputs`` are view nodes (:func:`runlog.content.readable`);
    ``outputs`` is absent while the run runs. The whole subtree is one pass over its
    events (stream events skipped unparsed beyond their kind); ``only`` names some of
    its runs (the live page asks for the runs that just started or ended), each read
    by its start and end seqs, two short reads whatever the trace streamed.

    Raises:
        UnknownRunError: no run has this id (or unique prefix/suffix).
        ValueError: a run in ``only`` is not in the subtree, or more than
            :data:`MAX_RUNS` of them.
    """
    rid = store.resolve_run_id(run_id)
    if only:
        return {"run_id": rid, "runs": _some(store, rid, only)}
    out: dict[str, dict[str, Any]] = {}
    for e in store.events(rid, descendants=True):
        kind = e.kind
        if kind == "stream":
            continue
        env = e.envelope
        entry = out.setdefault(e.run_id, {})
        if kind == "start":
            entry["inputs"] = content.readable(env.get("data"))
        else:
            entry["outputs"] = content.readable(env.get("data"))
            entry["usage"] = (content.usage(env.get("data")) if e.run_type in MODEL_TYPES
                              else {})
            if "inputs" in env:
                entry["inputs"] = content.readable(env["inputs"])
    return {"run_id": rid, "runs": out}


def _some(store: Store, rid: str, only: Sequence[str]) -> dict[str, dict[str, Any]]:
    if len(only) > MAX_RUNS:
        raise ValueError(f"at most {MAX_RUNS} runs per request, not {len(only)}")
    _, subtree = store.subtree_ids(rid)
    by_id = {r.run_id: r for r in store.trace_runs(store.run_info(rid).trace_id)
             if r.run_id in subtree}
    out = {}
    for wanted in only:
        info = by_id.get(wanted)
        if info is None:
            raise ValueError(f"run {wanted[:40]!r} is not {rid} or one of its descendants")
        inputs, outputs = run_values(store, info)
        entry = {"inputs": content.readable(inputs)}
        if info.end_seq is not None:
            entry["outputs"] = content.readable(outputs)
            entry["usage"] = content.usage(outputs) if info.run_type in MODEL_TYPES else {}
        out[info.run_id] = entry
    return out


def state_at(store: Store, run_id: str, seq: int | None) -> dict[str, Any]:
    """The run's ``RunState`` after every event up to ``seq`` (``None``: all), readable.

    ``{"run_id", "seq", "state"}``; ``state`` is ``null`` before the run's start event.
    The store keeps an index per run, so moving the scrubber reads only the events
    between the positions asked for (``docs/views.md``).

    Raises:
        UnknownRunError: no run has this id (or unique prefix/suffix).
    """
    rid = store.resolve_run_id(run_id)
    state = store.state_at(rid, seq)
    return {"run_id": rid, "seq": seq,
            "state": None if state is None else content.readable(_stored(state))}


def _side(store: Store, run_id: str) -> dict[str, dict[str, Any]]:
    """Per aligned key (``rag/model``), what the compare view shows of one run."""
    st = RunTreeState(run_id)
    for e in store.events(run_id, descendants=True):
        st.apply(e)
    out = {}
    for key, node in st.keyed(run_id).items():
        out[key] = {
            "run_id": node.run_id, "name": node.name, "run_type": node.run_type,
            "status": node.status, "error": node.error,
            "duration_ms": (node.end_us - node.start_us) / 1000
            if node.end_us is not None else None,
            "inputs": content.readable(_stored(node.inputs)),
            "outputs": content.readable(_stored(node.outputs)),
            "streamed": "".join(node.tokens) or "".join(
                x for x in node.streamed_output if isinstance(x, str)),
        }
    return out


def compare(store: Store, a: str, b: str) -> dict[str, Any]:
    """:func:`runlog.diff.diff` of runs ``a`` and ``b`` (``RunDiff.to_dict()``, what
    ``runlog diff --json`` prints) plus ``runs``: per aligned key, in A's order then
    B's extra ones, ``{"key", "a", "b", "changed"}`` with each side's name, type,
    status, error, duration, streamed text and readable inputs/outputs (``null`` on
    the side that has no such run); ``changed`` lists the fields the patch touches.

    Raises:
        UnknownRunError: either id names no run.
    """
    ra, rb = store.resolve_run_id(a), store.resolve_run_id(b)
    d = diff(store, ra, rb).to_dict()
    side_a, side_b = _side(store, ra), _side(store, rb)
    changed: dict[str, set[str]] = {}
    for op in d["patch"]:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")]
        if len(parts) >= 3 and parts[1] == "runs":
            changed.setdefault(parts[2], set()).add(parts[3] if len(parts) > 3 else "*")
    keys = list(side_a) + [k for k in side_b if k not in side_a]
    d["runs"] = [{"key": k, "a": side_a.get(k), "b": side_b.get(k),
                  "changed": sorted(changed.get(k, ()))} for k in keys]
    return d
