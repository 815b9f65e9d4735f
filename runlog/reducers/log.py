"""The log view: stored events folded into LangChain ``astream_log`` patches.

:class:`LogReducer` turns one event at a time into the ops LangChain's
``LogStreamCallbackHandler`` (plus ``_astream_log_implementation`` for the root) would
have sent for the same callback, so :func:`log_view` can consume an endless live
iterator lazily and a replay, a tail and a fold all share one code path. The rules are
those of ``/work/shared/langchain/spec.md`` section 2 (summarised in
``docs/views.md``):

* the first run seen is the root: one ``replace ""`` with a fresh ``RunState``; the
  root is never filtered and never an entry of ``/logs``;
* an included sub-run gets ``add /logs/<key>`` (``name``, ``name:2``, ... counted over
  included runs only, keys not escaped), its output chunks ``add .../streamed_output/-``,
  its model tokens two ops (``streamed_output_str`` and ``streamed_output``), and its end
  (or error) ``final_output`` + ``end_time``;
* root chunks go to ``/streamed_output/-`` and are accumulated with ``+`` (``TypeError``
  resets the accumulator) into ``/final_output`` ops computed by
  ``jsonpatch.JsonPatch.from_diff`` with a fast path for scalar leaves;
* the view stops after the root's end event, as LangChain's stream closes there.
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Callable, Iterable, Iterator, MutableMapping, MutableSequence
from dataclasses import dataclass, field
from typing import Any

import jsonpatch

from runlog.events import Event, micros_to_datetime
from runlog.filters import Filter
from runlog.reducers.common import (
    LLM_TYPES,
    diff_key,
    fresh,
    log_final_output,
    log_type,
)
from runlog.reducers.patch import apply_op, apply_ops
from runlog.reducers.types import LogEntry, OpsPrefix, RunLog, RunLogPatch, RunState

__all__ = ["JournalItem", "LogReducer", "RunLogJournal", "fold", "log_view"]

Op = dict[str, Any]
_SCALARS = (str, int, float, bool, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)


def _iso_ms(time_us: int) -> str:
    return micros_to_datetime(time_us).isoformat(timespec="milliseconds")


@dataclass(slots=True)
class _Run:
    name: str
    run_type: str
    key: str | None  # the /logs key when included
    chunks: int = 0  # output chunks or tokens seen (root only)


class _Text:
    """A string grown by appending parts, joined only when asked (and cached)."""

    __slots__ = ("_joined", "parts")

    def __init__(self, parts: list[str]) -> None:
        self.parts = parts
        self._joined: tuple[int, str] | None = None

    def text(self, upto: int | None = None) -> str:
        parts = self.parts
        n = len(parts) if upto is None else upto
        cached = self._joined
        if cached is not None and cached[0] == n:
            return cached[1]
        joined = "".join(parts if n == len(parts) else parts[:n])
        if n == len(parts):
            self._joined = (n, joined)
        return joined


@dataclass(slots=True)
class LogReducer:
    """Feed events in seq order; :meth:`feed` returns the patches each one produces.

    Args:
        filter: which sub-runs get a ``/logs`` entry (the root is never filtered).
        with_streamed_output_list: ``False`` leaves the root ``streamed_output`` empty.
        diff_dumps: equality key for leaves in ``/final_output`` diffs; LangChain uses
            its ``langchain_core.load.dumps``, the core the runlog codec (same result
            for every value both can serialise).
    """

    filter: Filter | None = None
    with_streamed_output_list: bool = True
    diff_dumps: Callable[[Any], Any] = diff_key
    root_id: str | None = None
    done: bool = False
    runs: dict[str, _Run] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    acc: Any = None
    last_seq: int = 0
    lazy_text: bool = False
    """Fold mode: grow a string root output as a list of parts, without ``replace``
    ops (each would copy the whole string: quadratic); :meth:`finish` joins them."""
    text_buf: _Text | None = None
    # The root string as of leaving string mode, while no later op has set
    # /final_output: fold-mode consumers applied only the text patches' eager ops, so
    # their state still holds an older string (finish writes this one).
    unwritten: str | None = None
    escape_keys: bool = False
    """Escape ``/`` and ``~`` in ``/logs/<key>`` pointers. LangChain does not (a run named
    ``a/b`` yields ``/logs/a/b``, which no JSON Patch applier can apply), so the log view
    keeps its bytes unescaped; folds, which only need the resulting state, escape."""

    def feed(self, event: Event) -> list[RunLogPatch]:
        """The patches ``event`` produces (often none)."""
        self.last_seq = event.seq
        if self.done:
            return []
        env = event.envelope  # one parse, then plain dict lookups on the hot path
        kind = env["kind"]
        if kind == "start":
            return self._start(event)
        run = self.runs.get(env["run_id"])
        if run is None:
            return []
        if kind == "stream":
            return self._stream(event, run, env)
        return self._end(event, run)

    # -- start ----------------------------------------------------------------------
    def _start(self, e: Event) -> list[RunLogPatch]:
        rid = e.run_id
        out: list[RunLogPatch] = []
        if self.root_id is None:
            self.root_id = rid
            self.runs[rid] = _Run(e.name, e.run_type, None)
            state = RunState(id=rid, streamed_output=[], final_output=None, logs={},
                             name=e.name, type=log_type(e.run_type))
            return [RunLogPatch({"op": "replace", "path": "", "value": state})]
        name, rtype = e.name, e.run_type
        f = self.filter
        if f is not None and not f.matches_run(name, log_type(rtype), e.tags, e.metadata):
            self.runs[rid] = _Run(name, rtype, None)
            return out
        n = self.counters.get(name, 0) + 1
        self.counters[name] = n
        key = name if n == 1 else f"{name}:{n}"
        if self.escape_keys:
            key = key.replace("~", "~0").replace("/", "~1")
        self.runs[rid] = _Run(name, rtype, key)
        entry = LogEntry(
            id=rid, name=name, type=log_type(rtype), tags=list(e.tags),
            metadata=e.metadata, start_time=_iso_ms(e.time_us), streamed_output=[],
            streamed_output_str=[], final_output=None, end_time=None,
        )
        out.append(RunLogPatch({"op": "add", "path": f"/logs/{key}", "value": entry}))
        return out

    # -- stream ---------------------------------------------------------------------
    def _stream(self, e: Event, run: _Run, env: dict[str, Any]) -> list[RunLogPatch]:
        channel = env.get("channel", "output")
        if channel == "custom":
            return []
        is_root = env["run_id"] == self.root_id
        if channel == "token":
            data = e.data
            token = data.get("token") if isinstance(data, dict) else data
            chunk = data.get("chunk") if isinstance(data, dict) else None
            if is_root:
                if run.run_type not in LLM_TYPES:
                    return []
                # a model at the root: astream yields the message chunks (chat) or text
                value = chunk if run.run_type == "chat_model" and chunk is not None else token
                return [self._root_chunk(fresh(value), run)]
            if run.key is None:
                return []
            value = chunk if run.run_type == "chat_model" and chunk is not None else token
            return [RunLogPatch(
                {"op": "add", "path": f"/logs/{run.key}/streamed_output_str/-",
                 "value": token},
                {"op": "add", "path": f"/logs/{run.key}/streamed_output/-", "value": value},
            )]
        if is_root:
            return [self._root_chunk(fresh(e.data), run)]
        if run.key is None:
            return []
        return [RunLogPatch({"op": "add", "path": f"/logs/{run.key}/streamed_output/-",
                             "value": e.data})]

    def finish(self, state: Any) -> Any:
        """Write the lazily grown root string into ``state`` (fold mode)."""
        if self.text_buf is not None and isinstance(state, dict):
            state["final_output"] = self.text_buf.text()
        elif self.unwritten is not None and isinstance(state, dict):
            state["final_output"] = self.unwritten
        return state

    def _root_chunk(self, chunk: Any, run: _Run) -> RunLogPatch:
        run.chunks += 1
        if self.lazy_text:
            buf = self.text_buf
            if type(chunk) is str and (buf is not None or type(self.acc) is str):
                ops: list[Op] = []
                if self.with_streamed_output_list:
                    ops.append({"op": "add", "path": "/streamed_output/-", "value": chunk})
                if not chunk:  # "" + "" == "": the diff is empty
                    return RunLogPatch(*ops)
                if buf is None:
                    buf = self.text_buf = _Text([self.acc])
                    self.unwritten = None  # the new buffer starts with it
                buf.parts.append(chunk)
                return _TextPatch(ops, buf, len(buf.parts))
            if buf is not None:  # leaving string mode: materialise, then go on as usual
                self.acc = self.unwritten = buf.text()
                self.text_buf = None
        prev = self.acc
        if prev is None:
            acc = chunk
        else:
            try:
                acc = prev + chunk
            except (TypeError, OverflowError):  # a datetime chunk past year 9999 too
                prev = None
                acc = chunk
        self.acc = acc
        ops = []
        if self.with_streamed_output_list:
            ops.append({"op": "add", "path": "/streamed_output/-", "value": fresh(chunk)})
        output_ops = self._diff(prev, acc)
        if output_ops:
            self.unwritten = None
        ops.extend(output_ops)
        return RunLogPatch(*ops)

    def _diff(self, prev: Any, acc: Any) -> list[Op]:
        tp, ta = type(prev), type(acc)
        if tp is ta and ta in _SCALAR_TYPES:  # the hot path: growing strings
            return [] if prev == acc else [
                {"op": "replace", "path": "/final_output", "value": acc}]
        if _is_container(prev) or _is_container(acc):
            ops = jsonpatch.JsonPatch.from_diff(prev, acc, dumps=self.diff_dumps)
            return [{**op, "path": f"/final_output{op['path']}"} for op in ops]
        # Leaves: jsonpatch replaces the value unless dumps(prev) == dumps(acc). Values
        # that compare unequal never dump equal, so dumps (O(size), which would make a
        # growing string or message quadratic) is only needed to confirm an equality.
        if type(prev) is type(acc) and isinstance(acc, _SCALARS):
            equal = prev == acc
        elif prev is None or acc is None or prev != acc:
            equal = False
        else:
            equal = self.diff_dumps(prev) == self.diff_dumps(acc)
        return [] if equal else [{"op": "replace", "path": "/final_output", "value": acc}]

    # -- end ------------------------------------------------------------------------
    def _end(self, e: Event, run: _Run) -> list[RunLogPatch]:
        if e.run_id == self.root_id:
            self.done = True
            out: list[RunLogPatch] = []
            # A root that never streamed (default astream = ainvoke: tools, retrievers,
            # prompts) still yields its output once to astream_log's consumer.
            if run.chunks == 0 and e.error is None and e.data is not None:
                value = _model_output(run.run_type, e.data)
                if value is not None:
                    out.append(self._root_chunk(fresh(value), run))
            return out
        if run.key is None:
            return []
        failed = e.error is not None
        return [RunLogPatch(
            {"op": "add", "path": f"/logs/{run.key}/final_output",
             "value": log_final_output(run.run_type, e.data, failed)},
            {"op": "add", "path": f"/logs/{run.key}/end_time", "value": _iso_ms(e.time_us)},
        )]


class _TextPatch(RunLogPatch):
    """A root-string patch whose ``replace /final_output`` value is built on access.

    Folding applies only :attr:`eager` (the ``/streamed_output/-`` append); the whole
    accumulated string, which every such patch carries in LangChain, is joined only if
    someone looks at :attr:`ops`.
    """

    def __init__(self, eager: list[Op], text: _Text, parts: int) -> None:
        self.eager = eager
        self._text = text
        self._parts = parts
        self._ops: list[Op] | None = None
        self._str: str | None = None

    @property
    def ops(self) -> list[Op]:
        # Cached: the cumulative ops of every later snapshot share this list's string.
        if self._ops is None:
            self._ops = [*self.eager, {"op": "replace", "path": "/final_output",
                                       "value": self.text()}]
        return self._ops

    @ops.setter
    def ops(self, value: list[Op]) -> None:
        raise AttributeError("a text patch's ops are derived")


    def text(self) -> str:
        """The root string as of this patch (one string, shared by every reader, as
        LangChain's op and states share it)."""
        if self._str is None:
            self._str = self._text.text(self._parts)
        return self._str


def _is_container(value: Any) -> bool:
    """What jsonpatch diffs member by member; bytes-like values are leaves here (a
    ``bytearray`` is a MutableSequence, but its items are not JSON values)."""
    return isinstance(value, (MutableMapping, MutableSequence)) and not isinstance(
        value, bytearray)


def _eager(p: RunLogPatch) -> list[Op]:
    return p.eager if type(p) is _TextPatch else p.ops


class _LazyRunLog(RunLog):
    """A ``diff=False`` item whose state's root string is joined only when looked at."""

    def __init__(self, reducer: LogReducer, state: Any, patch: RunLogPatch,
                 cumulative: OpsPrefix | None) -> None:
        self._reducer = reducer
        self._state = state
        self._patch = patch
        self._cumulative = cumulative

    @property
    def state(self) -> Any:
        return self._reducer.finish(self._state)

    @state.setter
    def state(self, value: Any) -> None:
        self._state = value

    @property
    def ops(self) -> Any:
        return self._cumulative if self._cumulative is not None else self._patch.ops

    @ops.setter
    def ops(self, value: list[Op]) -> None:
        raise AttributeError("read-only")

    @property
    def ops_added(self) -> list[Op]:
        return self._patch.ops

    @ops_added.setter
    def ops_added(self, value: list[Op]) -> None:
        raise AttributeError("read-only")


class RunLogJournal:
    """The patches of a ``diff=False`` view so far, and the running state they fold into.

    Each yielded ``RunLog`` is a snapshot: a position in this journal, materialised
    (:meth:`state_at`, :meth:`ops_at`) only when read. Producing items therefore costs
    one in-place apply per patch, as the aliased view does, while every item still owns
    its state, as in LangChain. A read of the newest item copies the running state; a
    read of an older one refolds the journal from the start (linear in its position),
    never from another item, whose state its reader may have changed.

    A root-string patch is kept as an ``int`` (its part count in the string's buffer,
    the buffer found by segment): one container kept per chunk made the cyclic garbage
    collector rescan a growing heap, which cost about as much as the view itself. Once
    its ops are read, the entry becomes that ops list (shared by every reader, as
    LangChain's items share their patches' ops), so a consumer that reads every item
    holds no index beside what LangChain's items hold.
    """

    __slots__ = ("entries", "seg_has_op", "seg_start", "seg_text", "state", "text")

    def __init__(self) -> None:
        # a patch, a root-string patch not yet read (its part count), or its built ops
        self.entries: list[RunLogPatch | int | list[Op]] = []
        self.seg_start: list[int] = []  # first entry of each root-string stretch
        self.seg_text: list[_Text] = []
        self.seg_has_op: list[bool] = []  # its patches append to /streamed_output
        self.state: Any = None
        self.text: int | None = None  # the entry whose root string is the current one

    def add(self, p: RunLogPatch) -> int:
        """Apply ``p`` to the running state (raising ``PatchError`` as LangChain would
        raise at that item); return the new position."""
        if type(p) is _TextPatch:
            self.state = apply_ops(self.state, p.eager)
            if not self.seg_text or self.seg_text[-1] is not p._text:
                self.seg_start.append(len(self.entries))
                self.seg_text.append(p._text)
                self.seg_has_op.append(bool(p.eager))
            self.text = len(self.entries)
            self.entries.append(p._parts)
        else:
            if self.text is not None and _sets_output(p):
                self.text = None
            self.state = apply_ops(self.state, p.ops)
            self.entries.append(p)
        return len(self.entries)

    def ops_of(self, i: int) -> list[Op]:
        """Entry ``i``'s ops; a root-string patch's built once (holding its whole
        string, as LangChain's patch does) and shared by every reader."""
        e = self.entries[i]
        if isinstance(e, RunLogPatch):
            return e.ops
        if isinstance(e, list):
            return e
        k = bisect.bisect_right(self.seg_start, i) - 1
        text = self.seg_text[k]
        ops = [{"op": "add", "path": "/streamed_output/-", "value": text.parts[e - 1]}
               ] if self.seg_has_op[k] else []
        ops.append({"op": "replace", "path": "/final_output", "value": text.text(e)})
        self.entries[i] = ops
        return ops

    def state_at(self, n: int) -> Any:
        """A private copy of the state after the first ``n`` patches."""
        state: Any
        if n == len(self.entries):
            state = _owned(self.state, {})
            if self.text is not None:
                state["final_output"] = self._text_of(self.text)
            return state
        state = None
        text: int | None = None  # the entry whose root string is not yet written
        starts, k = self.seg_start, -1
        for i, e in enumerate(self.entries[:n]):
            if isinstance(e, RunLogPatch):
                if text is not None and _sets_output(e):
                    state["final_output"] = self._text_of(text)
                    text = None
                state = apply_ops(state, e.ops)
                continue
            # a root-string patch: its ops once read, else its part count
            while k + 1 < len(starts) and starts[k + 1] <= i:
                k += 1
            if self.seg_has_op[k]:
                part = e[0]["value"] if isinstance(e, list) else self.seg_text[k].parts[e - 1]
                state = apply_op(state, {"op": "add", "path": "/streamed_output/-",
                                         "value": part})
            text = i
        if text is not None:
            state["final_output"] = self._text_of(text)
        return _owned(state, {})  # the refold shares leaves with the journal's ops

    def _text_of(self, i: int) -> str:
        # through the (cached) ops: the state and every ops list share one string
        return self.ops_of(i)[-1]["value"]  # type: ignore[no-any-return]

    def ops_at(self, n: int) -> list[Op]:
        """A new list of every op of the first ``n`` patches (LangChain's ``RunLog.ops``)."""
        # via a tuple: a list sized exactly, as LangChain's ``self.ops + other.ops`` is
        # (a list grown by appends keeps up to 1/8 spare slots, in every kept item)
        ops_of = self.ops_of
        return list(tuple(op for i in range(n) for op in ops_of(i)))


_UNSET: Any = object()


_ATOMS = frozenset({str, int, float, bool, type(None), bytes})  # deepcopy shares these


def _owned(value: Any, memo: dict[int, Any]) -> Any:
    """A copy of the state ``value`` that is one item's alone, and compact.

    * Plain dicts and lists are copied with ``.copy()``, which allocates a list at its
      exact size: the running state's lists (and a ``deepcopy``'s) grew by appends,
      which leaves up to 1/8 of their slots spare, in every state a consumer keeps.
    * Every other value that is not an immutable atom (a message, a Document, a dict
      subclass) is deep-copied with one ``memo`` per state, as LangChain's ``deepcopy``
      of each state does, so mutating one item's message never changes another's.
      Atoms (``str``, numbers, ...) stay shared, as ``deepcopy`` shares them.
    """
    t = type(value)
    if t is dict or t is list:
        out = value.copy()
        for k, v in (out.items() if t is dict else enumerate(out)):
            if type(v) not in _ATOMS:  # replacing a value keeps the dict's size: allowed
                out[k] = _owned(v, memo)
        return out
    if t in _ATOMS:
        return value
    return copy.deepcopy(value, memo)


def _sets_output(p: RunLogPatch) -> bool:
    return any(op["path"].startswith("/final_output") for op in p.ops)


class JournalItem:
    """The state and ops of a journal's item ``n``, built when first read, then owned.

    Mixed in before a ``RunLog`` class (ours, or LangChain's in the drop-in replay), so
    that every ``diff=False`` item behaves like a ``RunLog`` of its own while producing
    them stays linear: nothing is materialised until someone reads it.

    Slots, not the instance dict: a consumer keeps one item per patch, and an instance
    dict that gains ``_state`` and ``_ops`` after creation is rebuilt as a full dict
    (about 270 bytes an item, more than LangChain's whole ``RunLog`` object).
    """

    __slots__ = ("_journal", "_n", "_ops", "_state")

    def __init__(self, journal: RunLogJournal, n: int) -> None:  # no super(): lazy
        self._journal = journal
        self._n = n
        self._state: Any = _UNSET
        self._ops: Any = _UNSET

    @property
    def state(self) -> Any:
        if self._state is _UNSET:
            self._state = self._journal.state_at(self._n)
        return self._state

    @state.setter
    def state(self, value: Any) -> None:
        self._state = value

    @property
    def ops(self) -> list[Op]:
        if self._ops is _UNSET:
            self._ops = self._first_ops()
        return self._ops  # type: ignore[no-any-return]

    @ops.setter
    def ops(self, value: list[Op]) -> None:
        self._ops = value

    def _first_ops(self) -> list[Op]:
        return self._journal.ops_at(self._n)


class _SnapshotRunLog(JournalItem, RunLog):
    """A ``diff=False`` item of the core view (see :class:`JournalItem`)."""

    __slots__ = ("_added", "_keep_ops")

    def __init__(self, journal: RunLogJournal, n: int, keep_ops: bool) -> None:
        # JournalItem's fields, set inline: one item per patch
        self._journal = journal
        self._n = n
        self._state = self._ops = self._added = _UNSET
        self._keep_ops = keep_ops

    def _first_ops(self) -> list[Op]:
        return self._journal.ops_at(self._n) if self._keep_ops else self.ops_added

    @property
    def ops_added(self) -> list[Op]:
        if self._added is _UNSET:
            self._added = list(self._journal.ops_of(self._n - 1))
        return self._added  # type: ignore[no-any-return]

    @ops_added.setter
    def ops_added(self, value: list[Op]) -> None:
        self._added = value

    def __reduce__(self) -> tuple[Any, ...]:
        # copy, deepcopy and pickle give a plain RunLog of the materialised values
        return _plain_run_log, (self.ops, self.state, self.ops_added)


def _plain_run_log(ops: list[Op], state: Any, added: list[Op]) -> RunLog:
    log = RunLog(*ops, state=state)
    log.ops_added = added
    return log




def _model_output(run_type: str, outputs: Any) -> Any:
    """What a root's ``astream`` yielded once when it did not stream: the output itself,
    or for a model the first generation's text (LLM) or message (chat model)."""
    if run_type not in LLM_TYPES:
        return outputs
    if isinstance(outputs, dict) and outputs.get("generations"):
        first = outputs["generations"][0]
        if first and isinstance(first[0], dict):
            return first[0].get("message" if run_type == "chat_model" else "text")
    return None


def log_view(
    events: Iterable[Event],
    *,
    filter: Filter | None = None,
    diff: bool = True,
    with_streamed_output_list: bool = True,
    keep_ops: bool = True,
    diff_dumps: Callable[[Any], Any] | None = None,
    aliased: bool = False,
) -> Iterator[RunLogPatch]:
    """Yield what LangChain's ``astream_log`` yielded for the recorded run.

    Consumes ``events`` lazily (one event at a time, so a live tail can feed it) and
    stops after the root's end event.

    Args:
        events: the run's events (and its descendants') in seq order.
        filter: LangChain's include/exclude rules (+ metadata) for ``/logs`` entries.
        diff: ``True`` yields :class:`RunLogPatch`; ``False`` yields a cumulative
            :class:`RunLog` per patch, each with its own state and ``ops`` list as of
            that patch, as in LangChain, built only when read (see
            :class:`RunLogJournal`), so producing them stays linear.
        with_streamed_output_list: LangChain's option of the same name.
        keep_ops: with ``diff=False``, ``RunLog.ops`` is the cumulative list LangChain
            gives; ``False`` gives only the current patch's ops
            (``RunLog.ops == RunLog.ops_added``; with ``aliased`` memory then stays
            that of the state).
        diff_dumps: equality key for ``/final_output`` diffs (see :class:`LogReducer`).
        aliased: with ``diff=False``, the fast path of earlier versions: every RunLog
            shares one state updated in place and ``ops`` is a read-only
            :class:`OpsPrefix` of one journal; each item is exact only when yielded.
    """
    red = LogReducer(filter=filter, with_streamed_output_list=with_streamed_output_list)
    if diff_dumps is not None:
        red.diff_dumps = diff_dumps
    if diff:
        for e in events:
            yield from red.feed(e)
            if red.done:
                return
        return
    red.lazy_text = True
    if not aliased:
        book = RunLogJournal()
        for e in events:
            for p in red.feed(e):
                yield _SnapshotRunLog(book, book.add(p), keep_ops)
            if red.done:
                return
        return
    state: Any = None
    journal: list[RunLogPatch] = []
    counts: list[int] = []
    for e in events:
        for p in red.feed(e):
            state = apply_ops(state, _eager(p))
            if keep_ops:
                journal.append(p)
                counts.append((counts[-1] if counts else 0) + len(_eager(p))
                              + (type(p) is _TextPatch))
                yield _LazyRunLog(red, state, p, OpsPrefix(journal, counts[-1], counts))
            else:
                yield _LazyRunLog(red, state, p, None)
        if red.done:
            return


def fold(events: Iterable[Event], *, filter: Filter | None = None,
         with_streamed_output_list: bool = True) -> RunState | None:
    """The final ``RunState`` of a run (what the last ``diff=False`` RunLog holds).

    Linear in the events' size: patches are applied in place and never kept. Returns
    ``None`` when ``events`` holds no start event. Unlike the log view, a run whose name
    contains ``/`` folds fine (its ``/logs`` pointer is escaped; the key is the name).
    """
    red = LogReducer(filter=filter, with_streamed_output_list=with_streamed_output_list,
                     lazy_text=True, escape_keys=True)
    state: Any = None
    for e in events:
        for p in red.feed(e):
            state = apply_ops(state, _eager(p))
        if red.done:
            break
    return red.finish(state)  # type: ignore[no-any-return]

