"""Structured diff of two recorded runs: first diverging event, JSON Patch, timings.

Typical use: the same chain recorded before and after a prompt change. Two recordings
never share run ids or times, so runs are aligned by *tree position and name*: the root
with the root, and below each aligned run its children with the same name, the first
with the first, the second with the second (in start order). Each aligned run gets a
key such as ``rag/model`` or ``rag/tool[1]`` (the second child named ``tool``).

:func:`diff` reports:

* ``first_divergence``: the first event, in the order run A recorded them, whose
  counterpart in B (same run key, same position within the run) differs or is missing,
  with the field that differs (``data`` for an output chunk or a token, ``error``, ...);
* ``patch``: the JSON Patch (RFC 6902) turning A's state into B's: per run key its
  name, type, tags, metadata, inputs, status, output chunks, tokens, custom events,
  outputs and error (values in the codec's tagged JSON form, so a NaN or bytes compare
  as stored);
* ``state_patch``: the JSON Patch between the two runs' LangChain ``RunState``
  (:func:`runlog.fold`, what ``astream_log`` ends with), ids and times removed;
* ``timings``: per run key, start offset and duration in A and in B, kept apart from
  the patch because times always differ.

This module sits below :mod:`runlog.api` (it reads through :class:`StoreLike`) and
also offers the state it folds (:class:`RunTreeState`, :func:`fold_trees`), which the
testing toolkit reuses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import jsonpatch

from runlog import codec
from runlog.events import Event
from runlog.reducers import fold
from runlog.reducers.patch import PatchError

__all__ = [
    "Divergence",
    "RunDiff",
    "RunNode",
    "RunTreeState",
    "StoreLike",
    "Timing",
    "diff",
    "diff_events",
    "fold_trees",
]


class StoreLike(Protocol):
    """What :func:`diff` needs of a store (:class:`runlog.Store` has it)."""

    def resolve_run_id(self, run_id: str) -> str: ...

    def events(self, run_id: str | None = None, trace_id: str | None = None,
               after: int = 0, filter: Any = None, *, until: int | None = None,
               descendants: bool = False, page_size: int = 1000,
               digests: bool = False) -> Iterator[Event]: ...


def _plain(value: Any) -> Any:
    """A value in the codec's tagged JSON form: JSON-safe, NaN == NaN, bytes kept."""
    return codec.loads_plain(codec.encode(value))


# --------------------------------------------------------------------- state


@dataclass
class RunNode:
    """The folded state of one run."""

    run_id: str
    parent_id: str | None
    name: str
    run_type: str
    tags: tuple[str, ...]
    metadata: dict[str, Any]
    inputs: Any
    start_us: int
    status: str = "running"
    streamed_output: list[Any] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    custom_events: list[dict[str, Any]] = field(default_factory=list)
    outputs: Any = None
    error: dict[str, str] | None = None
    end_us: int | None = None
    first_stream_us: int | None = None
    events: int = 0

    def content(self) -> dict[str, Any]:
        """What a diff compares: everything but ids and times (tagged JSON values)."""
        return {
            "name": self.name, "run_type": self.run_type, "tags": list(self.tags),
            "metadata": _plain(self.metadata), "inputs": _plain(self.inputs),
            "status": self.status, "streamed_output": _plain(self.streamed_output),
            "tokens": list(self.tokens), "custom_events": _plain(self.custom_events),
            "outputs": _plain(self.outputs), "error": self.error,
        }

    def to_dict(self) -> dict[str, Any]:
        """The whole state, ids and times included."""
        return {**self.content(), "run_id": self.run_id, "parent_id": self.parent_id,
                "start_us": self.start_us, "end_us": self.end_us,
                "first_stream_us": self.first_stream_us, "events": self.events}


class RunTreeState:
    """The folded state of one trace (or of one run's subtree): a node per run.

    ``apply`` takes events in seq order; each event touches only its own run's node,
    which is why a live fold and a batch fold agree and why filtering commutes with it.
    """

    def __init__(self, trace_id: str) -> None:
        self.trace_id = trace_id
        self.runs: dict[str, RunNode] = {}
        self.order: list[str] = []

    def apply(self, e: Event) -> None:
        kind = e.kind
        if kind == "start":
            if e.run_id in self.runs:
                return  # a duplicate start (an import replaying a prefix) changes nothing
            self.runs[e.run_id] = RunNode(e.run_id, e.parent_id, e.name, e.run_type, e.tags,
                                          e.metadata, e.data, e.time_us, events=1)
            self.order.append(e.run_id)
            return
        node = self.runs.get(e.run_id)
        if node is None:  # the start is outside what was read (a tail joined late)
            node = self.runs[e.run_id] = RunNode(e.run_id, e.parent_id, e.name, e.run_type,
                                                 e.tags, e.metadata, None, e.time_us)
            self.order.append(e.run_id)
        node.events += 1
        if kind == "stream":
            if node.first_stream_us is None:
                node.first_stream_us = e.time_us
            channel, data = e.channel, e.data
            if channel == "token" and isinstance(data, dict):
                node.tokens.append(str(data.get("token", "")))
            elif channel == "custom":
                node.custom_events.append(data if isinstance(data, dict) else {"data": data})
            else:
                node.streamed_output.append(data)
        else:
            node.outputs = e.data
            node.end_us = e.time_us
            err = e.error
            node.status = "error" if err is not None else "ok"
            node.error = {"type": err.type, "message": err.message} if err else None
            if e.has_inputs:
                node.inputs = e.inputs

    def restricted(self, keep: Callable[[RunNode], bool]) -> RunTreeState:
        """The same state with only the runs ``keep`` accepts (nodes shared, not copied)."""
        out = RunTreeState(self.trace_id)
        out.order = [r for r in self.order if keep(self.runs[r])]
        out.runs = {r: self.runs[r] for r in out.order}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {r: self.runs[r].to_dict() for r in self.order}

    def keyed(self, root_id: str | None = None) -> dict[str, RunNode]:
        """Nodes by aligned key (see the module docstring), in start order.

        ``root_id`` picks the subtree to key (default: the trace's runs without a
        parent in this state).
        """
        children: dict[str | None, list[str]] = {}
        for r in self.order:
            p = self.runs[r].parent_id
            children.setdefault(p if p in self.runs else None, []).append(r)
        tops = [root_id] if root_id is not None else children.get(None, [])
        out: dict[str, RunNode] = {}

        def keys(run_ids: list[str], prefix: str) -> list[tuple[str, str]]:
            seen: dict[str, int] = {}
            found = []
            for rid in run_ids:
                node = self.runs[rid]
                k = seen.get(node.name, 0)
                seen[node.name] = k + 1
                label = _escape(node.name) + (f"[{k}]" if k else "")
                found.append((rid, f"{prefix}/{label}" if prefix else label))
            return found

        # Depth first, iteratively and each run once: a store another process wrote
        # may hold a parent cycle, or nesting deeper than the recursion limit.
        visited: set[str] = set()
        todo = keys(tops, "")[::-1]
        while todo:
            rid, key = todo.pop()
            if rid in visited:
                continue
            visited.add(rid)
            out[key] = self.runs[rid]
            todo.extend(keys(children.get(rid, []), key)[::-1])
        return out


def _escape(name: str) -> str:
    return name.replace("\\", "\\\\").replace("/", "\\/").replace("[", "\\[")


def fold_trees(events: Iterable[Event]) -> dict[str, RunTreeState]:
    """Fold events (seq order) into one :class:`RunTreeState` per trace id."""
    out: dict[str, RunTreeState] = {}
    for e in events:
        st = out.get(e.trace_id)
        if st is None:
            st = out[e.trace_id] = RunTreeState(e.trace_id)
        st.apply(e)
    return out


# --------------------------------------------------------------------- diff


@dataclass(frozen=True)
class Divergence:
    """The first event where two runs differ."""

    run: str
    """Aligned key of the run (``rag/model``)."""
    index: int
    """Position of the event within that run (0 = its start)."""
    field: str
    """What differs: ``missing_in_a``, ``missing_in_b``, ``kind``, ``channel``, ``data``,
    ``error``, ``inputs``, ``tags``, ``metadata``, ``run_type``."""
    a: dict[str, Any] | None
    b: dict[str, Any] | None
    seq_a: int | None
    seq_b: int | None

    def describe(self) -> str:
        """One sentence naming the event and the values."""
        where = f"run {self.run!r}, event {self.index}"
        if self.a is None:
            return f"{where}: only in B: {_summary(self.b)}"
        if self.b is None:
            return f"{where}: only in A: {_summary(self.a)}"
        if self.field == "data" and self.a.get("channel") == "token":
            ta, tb = self.a["data"].get("token"), self.b["data"].get("token")
            if ta != tb:
                return f"{where}: token {ta!r} in A, {tb!r} in B"
        return (f"{where} ({_summary(self.a)}): {self.field} is "
                f"{_short(self.a.get(self.field))} in A, {_short(self.b.get(self.field))} in B")

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "index": self.index, "field": self.field, "a": self.a,
                "b": self.b, "seq_a": self.seq_a, "seq_b": self.seq_b,
                "description": self.describe()}


def _short(v: Any, limit: int = 80) -> str:
    text = codec.dumps_plain(v).decode() if v is not None else "null"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _summary(e: dict[str, Any] | None) -> str:
    if e is None:
        return "nothing"
    if e["kind"] == "stream":
        return f"{e['channel']} {_short(e['data'], 40)}"
    return f"{e['kind']} {_short(e['data'], 40)}"


@dataclass(frozen=True)
class Timing:
    """Start offset (from the root's start) and duration of one aligned run, in ms."""

    run: str
    start_a_ms: float | None
    start_b_ms: float | None
    duration_a_ms: float | None
    duration_b_ms: float | None
    first_output_a_ms: float | None
    first_output_b_ms: float | None

    @property
    def delta_ms(self) -> float | None:
        if self.duration_a_ms is None or self.duration_b_ms is None:
            return None
        return self.duration_b_ms - self.duration_a_ms

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "start_a_ms": self.start_a_ms, "start_b_ms": self.start_b_ms,
                "duration_a_ms": self.duration_a_ms, "duration_b_ms": self.duration_b_ms,
                "delta_ms": self.delta_ms, "first_output_a_ms": self.first_output_a_ms,
                "first_output_b_ms": self.first_output_b_ms}


@dataclass(frozen=True)
class RunDiff:
    """The result of :func:`diff` (see the module docstring)."""

    a: str
    b: str
    first_divergence: Divergence | None
    patch: list[dict[str, Any]]
    timings: list[Timing]
    only_in_a: list[str]
    only_in_b: list[str]
    state_patch: list[dict[str, Any]] = field(default_factory=list)
    state_note: str | None = None
    """Why ``state_patch`` is empty although the runs differ (the fold failed)."""

    @property
    def same(self) -> bool:
        """True when the runs recorded the same events (times and ids aside)."""
        return self.first_divergence is None and not self.patch and not self.state_patch

    def __bool__(self) -> bool:
        """A diff is truthy when there is a difference (like a non-empty patch)."""
        return not self.same

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a, "b": self.b, "same": self.same,
            "first_divergence": (self.first_divergence.to_dict()
                                 if self.first_divergence else None),
            "patch": self.patch, "state_patch": self.state_patch,
            "state_note": self.state_note,
            "only_in_a": self.only_in_a, "only_in_b": self.only_in_b,
            "timings": [t.to_dict() for t in self.timings],
        }


def _norm(e: Event) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": e.kind, "channel": e.channel, "run_type": e.run_type,
                         "data": _plain(e.data), "tags": list(e.tags),
                         "metadata": _plain(e.metadata)}
    err = e.error
    d["error"] = {"type": err.type, "message": err.message} if err is not None else None
    if e.has_inputs:
        d["inputs"] = _plain(e.inputs)
    return d


_FIELDS = ("kind", "channel", "run_type", "data", "error", "inputs", "tags", "metadata")


def _per_run(events: list[Event], keys: dict[str, str]) -> dict[str, list[tuple[int, Event]]]:
    out: dict[str, list[tuple[int, Event]]] = {}
    for e in events:
        k = keys.get(e.run_id)
        if k is not None:
            out.setdefault(k, []).append((e.seq, e))
    return out


def _first_divergence(ev_a: list[Event], ev_b: list[Event], keys_a: dict[str, str],
                      keys_b: dict[str, str]) -> Divergence | None:
    runs_a, runs_b = _per_run(ev_a, keys_a), _per_run(ev_b, keys_b)
    index_in_run: dict[str, int] = {}
    for e in ev_a:  # in A's order
        key = keys_a.get(e.run_id)
        if key is None:
            continue
        i = index_in_run.get(key, 0)
        index_in_run[key] = i + 1
        other = runs_b.get(key, [])
        na = _norm(e)
        if i >= len(other):
            return Divergence(key, i, "missing_in_b", na, None, e.seq, None)
        seq_b, eb = other[i]
        nb = _norm(eb)
        if na != nb:
            fld = next(f for f in _FIELDS if na.get(f) != nb.get(f))
            return Divergence(key, i, fld, na, nb, e.seq, seq_b)
    for e in ev_b:  # B has events A lacks
        key = keys_b.get(e.run_id)
        if key is None:
            continue
        i = next(j for j, (s, _) in enumerate(runs_b[key]) if s == e.seq)
        if i >= len(runs_a.get(key, [])):
            return Divergence(key, i, "missing_in_a", None, _norm(e), None, e.seq)
    return None


def _ms(us: int | None, base: int | None) -> float | None:
    return None if us is None or base is None else (us - base) / 1000.0


def diff_events(events_a: Iterable[Event], events_b: Iterable[Event], *,
                root_a: str | None = None, root_b: str | None = None) -> RunDiff:
    """Diff two runs given their subtrees' events (seq order).

    ``root_a``/``root_b`` are the runs to compare (default: the first run started in
    each stream). The events may come from different stores.
    """
    ev_a, ev_b = list(events_a), list(events_b)
    if not ev_a or not ev_b:
        raise ValueError("diff needs the events of two recorded runs; one side is empty")
    root_a = root_a or next(e.run_id for e in ev_a if e.kind == "start")
    root_b = root_b or next(e.run_id for e in ev_b if e.kind == "start")
    state_a, state_b = _subtree_state(ev_a, root_a), _subtree_state(ev_b, root_b)
    nodes_a, nodes_b = state_a.keyed(root_a), state_b.keyed(root_b)
    keys_a = {n.run_id: k for k, n in nodes_a.items()}
    keys_b = {n.run_id: k for k, n in nodes_b.items()}
    doc_a = {"runs": {k: n.content() for k, n in nodes_a.items()}}
    doc_b = {"runs": {k: n.content() for k, n in nodes_b.items()}}
    patch = list(jsonpatch.make_patch(doc_a, doc_b))
    base_a, base_b = nodes_a[next(iter(nodes_a))].start_us, nodes_b[next(iter(nodes_b))].start_us
    timings = []
    for k in list(nodes_a) + [k for k in nodes_b if k not in nodes_a]:
        na, nb = nodes_a.get(k), nodes_b.get(k)
        timings.append(Timing(
            k,
            _ms(na.start_us, base_a) if na else None, _ms(nb.start_us, base_b) if nb else None,
            _ms(na.end_us, na.start_us) if na else None,
            _ms(nb.end_us, nb.start_us) if nb else None,
            _ms(na.first_stream_us, na.start_us) if na else None,
            _ms(nb.first_stream_us, nb.start_us) if nb else None))
    state_patch: list[dict[str, Any]] = []
    note = None
    try:
        state_patch = list(jsonpatch.make_patch(_folded(ev_a, root_a), _folded(ev_b, root_b)))
    except PatchError as e:  # e.g. a run name the astream_log paths cannot hold
        note = f"the RunState could not be folded: {e}"
    return RunDiff(
        root_a, root_b, _first_divergence(ev_a, ev_b, keys_a, keys_b), patch, timings,
        [k for k in nodes_a if k not in nodes_b], [k for k in nodes_b if k not in nodes_a],
        state_patch, note)


_VOLATILE = ("id", "start_time", "end_time")


def _folded(events: list[Event], root: str) -> dict[str, Any]:
    """``runlog.fold`` of a run's subtree without ids and times, in tagged JSON form."""
    mine = [e for e in events if e.trace_id == events[0].trace_id]
    starts = [i for i, e in enumerate(mine) if e.run_id == root and e.kind == "start"]
    state: Any = fold(mine[starts[0]:] if starts else mine)
    if state is None:
        return {}
    doc: dict[str, Any] = _plain({k: v for k, v in state.items() if k not in _VOLATILE})
    logs = doc.get("logs")
    if isinstance(logs, dict):
        doc["logs"] = {k: {f: v for f, v in entry.items() if f not in _VOLATILE}
                       for k, entry in logs.items()}
    return doc


def _subtree_state(events: list[Event], root: str) -> RunTreeState:
    st = RunTreeState(root)
    for e in events:
        st.apply(e)
    if root not in st.runs:
        raise ValueError(f"run {root} has no start event among the events given")
    return st


def diff(store: StoreLike, a: str, b: str, *, store_b: StoreLike | None = None) -> RunDiff:
    """Diff run ``a`` with run ``b`` (ids or unique prefixes), their subtrees included.

    Args:
        store: where both runs are (or run ``a`` when ``store_b`` is given).
        store_b: where run ``b`` is, to compare across stores (before/after a deploy).

    Returns:
        A :class:`RunDiff`; ``diff.same`` is True when nothing but ids and times differ.
    """
    other = store_b if store_b is not None else store
    ra, rb = store.resolve_run_id(a), other.resolve_run_id(b)
    return diff_events(store.events(ra, descendants=True), other.events(rb, descendants=True),
                       root_a=ra, root_b=rb)
