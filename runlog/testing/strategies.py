"""Hypothesis strategies for run logs: *recording programs* and the values they stream.

A generated value is not a list of events but a :class:`Program`: a small, readable
description of what a pipeline does (which runs start, under which parent, what they
stream, how they end, which ones run concurrently). :func:`play` records a program into
any store through the public recorder API, so every generated stream is valid by
construction and goes through exactly the code a real pipeline uses; the events the
store hands back are what your reducers, views, filters or backend are tested on.

Why programs rather than raw events: hypothesis shrinks a program structurally (drop a
child, drop a chunk, end a run normally instead of failing, run concurrent runs one after
the other), so a failing example comes back as a few lines such as::

    Program(roots=(RunSpec('rag', 'chain', actions=(Token('a'),), ending=Fail('ValueError', '')),))

Example::

    from hypothesis import given
    import runlog
    from runlog.testing.strategies import play, programs

    @given(programs(max_depth=2))
    def test_my_view_accepts_everything(program):
        with runlog.open(":memory:") as store:
            recording = play(program, store)
            for root in recording.root_ids:
                list(store.replay(root, view="log"))

Knobs (all keyword arguments of :func:`programs`): ``max_roots``, ``max_depth``,
``max_children``, ``max_actions``, ``run_types``, ``errors``, ``unfinished``,
``interleave`` and ``values`` (the strategy for streamed chunks, inputs and outputs;
:func:`chunks` by default, :func:`json_values` to stay within plain JSON).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from hypothesis import strategies as st

from runlog import codec
from runlog.events import RUN_TYPES, ErrorInfo, Event
from runlog.filters import ANY, Filter
from runlog.recorder import Run

if TYPE_CHECKING:
    from runlog.api import Store

__all__ = [
    "RUN_NAMES",
    "Action",
    "Child",
    "Custom",
    "Ending",
    "Fail",
    "Ok",
    "Op",
    "Program",
    "Recording",
    "RunSpec",
    "Stream",
    "Token",
    "Unfinished",
    "awkward_values",
    "chunks",
    "compile_program",
    "event_streams",
    "filters",
    "json_values",
    "message_chunks",
    "play",
    "program_features",
    "programs",
    "run_specs",
    "same_value",
]

RUN_NAMES: tuple[str, ...] = (
    "rag", "retriever", "model", "prompt", "parser", "tool", "agent", "search", "step",
)
"""Readable run names; drawn first, so shrunk examples use them."""


# --------------------------------------------------------------------- programs


def _short_repr(obj: Any) -> str:
    """A dataclass repr that leaves out fields still at their default (readable output)."""
    parts = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.default is not dataclasses.MISSING and _same_default(value, f.default):
            continue
        if f.default_factory is not dataclasses.MISSING and value == f.default_factory():
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        parts.append(repr(value) if required else f"{f.name}={value!r}")
    return f"{type(obj).__name__}({', '.join(parts)})"


def _same_default(value: Any, default: Any) -> bool:
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:  # pragma: no cover - exotic __eq__
        return False


@dataclass(frozen=True, repr=False)
class Stream:
    """``run.stream(chunk)``: one chunk of the run's output (channel ``output``)."""

    chunk: Any

    __repr__ = _short_repr


@dataclass(frozen=True, repr=False)
class Token:
    """``run.token(token, chunk)``: one model token (channel ``token``)."""

    token: str
    chunk: Any = None

    __repr__ = _short_repr


@dataclass(frozen=True, repr=False)
class Custom:
    """``run.event(name, data)``: a custom event (channel ``custom``)."""

    name: str
    data: Any = None

    __repr__ = _short_repr


@dataclass(frozen=True, repr=False)
class Child:
    """A child run started at this point of its parent's actions."""

    run: RunSpec

    __repr__ = _short_repr


Action: TypeAlias = Stream | Token | Custom | Child


@dataclass(frozen=True, repr=False)
class Ok:
    """The run ends normally with ``outputs`` (and final ``inputs`` when ``has_inputs``)."""

    outputs: Any = None
    has_inputs: bool = False
    inputs: Any = None

    __repr__ = _short_repr


@dataclass(frozen=True, repr=False)
class Fail:
    """The run ends with an error (type and message), keeping partial ``outputs``."""

    type: str = "ValueError"
    message: str = ""
    outputs: Any = None

    __repr__ = _short_repr


@dataclass(frozen=True, repr=False)
class Unfinished:
    """The run never ends (a crash, or a process still running it)."""

    __repr__ = _short_repr


Ending: TypeAlias = Ok | Fail | Unfinished


@dataclass(frozen=True, repr=False)
class RunSpec:
    """One run: identity, what it does in order, how it ends.

    ``interleave`` non-empty means the run's children run *concurrently*: their events
    (and the run's own chunks) are interleaved by that schedule (each number picks which
    still-active lane emits next; an exhausted schedule lets the first lane run on).
    """

    name: str
    run_type: str = "chain"
    inputs: Any = None
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    actions: tuple[Action, ...] = ()
    ending: Ending = field(default_factory=Ok)
    interleave: tuple[int, ...] = ()

    __repr__ = _short_repr

    @property
    def children(self) -> tuple[RunSpec, ...]:
        return tuple(a.run for a in self.actions if isinstance(a, Child))

    def walk(self) -> Iterator[RunSpec]:
        """This run and its descendants, depth first in program order."""
        yield self
        for c in self.children:
            yield from c.walk()


@dataclass(frozen=True, repr=False)
class Program:
    """Root runs, interleaved by ``interleave`` (empty: one trace after the other)."""

    roots: tuple[RunSpec, ...]
    interleave: tuple[int, ...] = ()

    __repr__ = _short_repr

    def walk(self) -> Iterator[RunSpec]:
        for r in self.roots:
            yield from r.walk()


Path: TypeAlias = tuple[int, ...]
"""A run's position: root index, then child index (0-based, in action order) per level."""


@dataclass(frozen=True)
class Op:
    """One recorder call of a compiled program: start, a stream action, or end."""

    path: Path
    spec: RunSpec
    action: Stream | Token | Custom | Ending | None  # None: the run's start


def _merge(lanes: list[list[Op]], schedule: Sequence[int]) -> list[Op]:
    lanes = [lane for lane in lanes if lane]
    out: list[Op] = []
    i = 0
    while lanes:
        k = schedule[i] % len(lanes) if i < len(schedule) else 0
        i += 1
        out.append(lanes[k].pop(0))
        if not lanes[k]:
            del lanes[k]
    return out


def _compile_run(spec: RunSpec, path: Path) -> list[Op]:
    own: list[Op] = []
    lanes: list[list[Op]] = []
    seq_ops: list[Op] = []
    child_index = 0
    for a in spec.actions:
        if isinstance(a, Child):
            child_ops = _compile_run(a.run, (*path, child_index))
            child_index += 1
            lanes.append(child_ops)
            seq_ops.extend(child_ops)
        else:
            op = Op(path, spec, a)
            own.append(op)
            seq_ops.append(op)
    body = _merge([own, *lanes], spec.interleave) if spec.interleave else seq_ops
    end = [] if isinstance(spec.ending, Unfinished) else [Op(path, spec, spec.ending)]
    return [Op(path, spec, None), *body, *end]


def compile_program(program: Program) -> list[Op]:
    """The recorder calls a program makes, in the order :func:`play` makes them.

    Every run's start comes before its own events and its children's; a run's end comes
    after its children's events (concurrent runs interleave in between).
    """
    lanes = [_compile_run(r, (i,)) for i, r in enumerate(program.roots)]
    if program.interleave:
        return _merge(lanes, program.interleave)
    return [op for lane in lanes for op in lane]


# --------------------------------------------------------------------- playing


@dataclass
class Recording:
    """What :func:`play` recorded: the run id of every program position, and the calls."""

    program: Program
    ops: list[Op]
    run_ids: dict[Path, str]
    root_ids: list[str]
    first_seq: int
    last_seq: int

    def path_of(self, run_id: str) -> Path:
        for p, rid in self.run_ids.items():
            if rid == run_id:
                return p
        raise KeyError(run_id)

    def events(self, store: Store) -> list[Event]:
        """The events this recording committed (after :func:`play` flushed them)."""
        return list(store.events(after=self.first_seq, until=self.last_seq))


def _end(run: Run, ending: Ok | Fail, time: int | None) -> None:
    if isinstance(ending, Ok):
        if ending.has_inputs:
            run.end(ending.outputs, inputs=ending.inputs, time=time)
        else:
            run.end(ending.outputs, time=time)
    else:
        run.end(ending.outputs, error=ErrorInfo(ending.type, ending.message, ""), time=time)


def play(program: Program, store: Store, *, time_base: int | None = None,
         run_id: Callable[[Path], str] | None = None) -> Recording:
    """Record ``program`` into ``store`` through the public recorder API, then flush.

    Args:
        program: what to record (see :func:`programs`).
        store: any store (``runlog.open(...)``); it should not be written by anyone else
            meanwhile if you use :meth:`Recording.events`.
        time_base: epoch microseconds for the first call; each later call is one
            microsecond later, which makes recorded bytes deterministic. ``None`` uses
            the wall clock, as a real pipeline does.
        run_id: choose the run id of each program position (default: fresh UUIDv7s).

    Returns:
        A :class:`Recording` mapping each program position to its run id.
    """
    ops = compile_program(program)
    store.flush()
    first = store.last_seq()
    handles: dict[Path, Run] = {}
    run_ids: dict[Path, str] = {}
    roots: list[str] = []
    for step, op in enumerate(ops):
        t = None if time_base is None else time_base + step
        spec, a = op.spec, op.action
        if a is None:
            kwargs: dict[str, Any] = {
                "inputs": spec.inputs, "tags": list(spec.tags), "metadata": dict(spec.metadata),
                "time": t}
            if run_id is not None:
                kwargs["run_id"] = run_id(op.path)
            if len(op.path) == 1:
                run = store.start_run(spec.name, spec.run_type, parent=None, **kwargs)
                roots.append(run.id)
            else:
                run = handles[op.path[:-1]].start_child(spec.name, spec.run_type, **kwargs)
            handles[op.path] = run
            run_ids[op.path] = run.id
            continue
        run = handles[op.path]
        if isinstance(a, Stream):
            run.stream(a.chunk, time=t)
        elif isinstance(a, Token):
            run.token(a.token, a.chunk, time=t)
        elif isinstance(a, Custom):
            run.event(a.name, a.data, time=t)
        elif isinstance(a, Ok | Fail):
            _end(run, a, t)
    store.flush()
    return Recording(program, ops, run_ids, roots, first, store.last_seq())


def program_features(program: Program) -> set[str]:
    """Labels of what a program exercises (for hypothesis ``event()`` and coverage tests).

    ``run_type:<t>`` for each run type, ``nested``, ``error``, ``unfinished``,
    ``interleaved`` (concurrent runs whose events actually interleave), ``stream``,
    ``token``, ``custom``, ``awkward`` (a value outside plain JSON), ``end_inputs``.
    """
    out: set[str] = set()
    for spec in program.walk():
        out.add(f"run_type:{spec.run_type}")
        if spec.children:
            out.add("nested")
        if isinstance(spec.ending, Fail):
            out.add("error")
        elif isinstance(spec.ending, Unfinished):
            out.add("unfinished")
        elif spec.ending.has_inputs:
            out.add("end_inputs")
        values: list[Any] = [spec.inputs]
        for a in spec.actions:
            if isinstance(a, Stream):
                out.add("stream")
                values.append(a.chunk)
            elif isinstance(a, Token):
                out.add("token")
                values.append(a.chunk)
            elif isinstance(a, Custom):
                out.add("custom")
                values.append(a.data)
        if any(not _is_plain_json(v) for v in values):
            out.add("awkward")
    ops = compile_program(program)
    trace_order = [op.path[0] for op in ops]
    if any(a > b for a, b in itertools.pairwise(trace_order)):
        out.add("interleaved")
    for spec_ops in _sibling_interleavings(ops):
        if spec_ops:
            out.add("interleaved")
            break
    return out


def _sibling_interleavings(ops: list[Op]) -> Iterator[bool]:
    # Two sibling runs interleave when a sibling's op sits between another's first and last.
    spans: dict[Path, tuple[int, int]] = {}
    for i, op in enumerate(ops):
        lo, _ = spans.get(op.path, (i, i))
        spans[op.path] = (lo, i)
    by_parent: dict[Path, list[tuple[int, int]]] = {}
    for p, span in spans.items():
        if len(p) > 1:
            by_parent.setdefault(p[:-1], []).append(span)
    for siblings in by_parent.values():
        siblings.sort()
        yield any(b[0] < a[1] for a, b in itertools.pairwise(siblings))


def _is_plain_json(v: Any) -> bool:
    # orjson writes datetimes, UUIDs and tuples natively, so any tag makes these differ
    try:
        return codec.encode(v) == codec.dumps_plain(v)
    except Exception:
        return False


def same_value(a: Any, b: Any) -> bool:
    """Equality as the log sees it: equal canonical encodings (NaN equals NaN)."""
    return codec.encode(a) == codec.encode(b)


# --------------------------------------------------------------------- values


def json_values(max_leaves: int = 6) -> st.SearchStrategy[Any]:
    """Plain JSON values (str keys, finite floats, 64-bit ints), small and nested."""
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
    return st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=3),
                                st.dictionaries(st.text(max_size=6), inner, max_size=3)),
        max_leaves=max_leaves)


def message_chunks() -> st.SearchStrategy[dict[str, Any]]:
    """Message-like dicts as chat models stream them (LangChain and OpenAI shapes)."""
    content = st.text(max_size=16)
    tool_chunk = st.fixed_dictionaries({
        "name": st.one_of(st.none(), st.sampled_from(["search", "calculator"])),
        "args": st.sampled_from(["", '{"q', '": "x"}', "{}"]),
        "id": st.one_of(st.none(), st.just("call_1")),
        "index": st.integers(0, 2),
    })
    lc = st.fixed_dictionaries(
        {"type": st.sampled_from(["AIMessageChunk", "ai", "human", "tool"]), "content": content},
        optional={"id": st.just("run-1"), "additional_kwargs": st.just({}),
                  "tool_call_chunks": st.lists(tool_chunk, max_size=2),
                  "response_metadata": st.fixed_dictionaries(
                      {}, optional={"finish_reason": st.just("stop")})})
    openai = st.fixed_dictionaries({
        "role": st.sampled_from(["assistant", "user", "system"]), "content": content})
    return st.one_of(lc, openai)


def _lone_surrogate_text() -> st.SearchStrategy[str]:
    surrogate = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
    return st.builds(lambda a, s, b: a + s + b, st.text(max_size=3), surrogate,
                     st.text(max_size=3))


def awkward_values() -> st.SearchStrategy[Any]:
    """Values the codec must keep although JSON cannot: each documented tag of the codec.

    NaN and infinities, ints beyond 64 bits, strings with lone surrogates, bytes and
    bytearrays, tuples, sets and frozensets, dicts with non-str keys (or keys that look
    like tags), datetimes (aware and naive), dates, times, timedeltas, UUIDs, Decimals.
    """
    small = st.one_of(st.integers(-5, 5), st.text(max_size=4))
    return st.one_of(
        st.sampled_from([math.nan, math.inf, -math.inf, -0.0]),
        st.one_of(st.integers(min_value=2**63), st.integers(max_value=-(2**63) - 1)),
        _lone_surrogate_text(),
        st.binary(max_size=8),
        st.binary(max_size=8).map(bytearray),
        st.tuples(small, small),
        st.frozensets(small, max_size=3),
        st.sets(small, max_size=3),
        st.dictionaries(st.integers(-3, 3), small, min_size=1, max_size=2),
        st.dictionaries(st.tuples(st.integers(0, 2), st.text(max_size=2)), small,
                        min_size=1, max_size=2),
        st.just({"$rl:float": "nan"}),  # user data that looks like a tag
        st.datetimes(timezones=st.sampled_from([None, dt.UTC,
                                                dt.timezone(dt.timedelta(hours=5, minutes=30))])),
        st.dates(), st.times(), st.timedeltas(),
        st.uuids(),
        st.decimals(allow_nan=False, allow_infinity=False, places=4),
    )


def chunks(*, awkward: bool = True) -> st.SearchStrategy[Any]:
    """What a run streams: text first (shrinks to ``''``), message dicts, JSON, awkward."""
    parts: list[st.SearchStrategy[Any]] = [st.text(max_size=16), message_chunks(),
                                           json_values()]
    if awkward:
        parts.append(awkward_values())
        parts.append(st.lists(awkward_values(), min_size=1, max_size=2))
    return st.one_of(*parts)


# --------------------------------------------------------------------- run specs

_TAGS = st.sampled_from(["demo", "llm", "seq:step:1", "prod", "map:key:x"])
_META = st.dictionaries(
    st.sampled_from(["user", "ls_model_name", "attempt", "$rl:key"]),
    st.one_of(st.text(max_size=6), st.integers(0, 9), st.none()), max_size=2)


_NAMES = st.one_of(  # readable names first; then any valid Unicode (stored as plain strings)
    st.sampled_from(RUN_NAMES),
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=8))
_TAG_LISTS = st.lists(_TAGS, max_size=2, unique=True).map(tuple)
_SCHEDULES = st.lists(st.integers(0, 7), max_size=12).map(tuple)


@dataclass(frozen=True)
class _Parts:
    """Strategies built once per knob setting: hypothesis validates a strategy object
    on first use, so rebuilding them inside each draw made generation ~10x slower."""

    names: st.SearchStrategy[str]
    run_types: st.SearchStrategy[str]
    value: st.SearchStrategy[Any]
    actions: st.SearchStrategy[list[Stream | Token | Custom]]
    endings: st.SearchStrategy[Ending]
    max_children: int
    interleave: bool


def _parts(max_children: int, max_actions: int, run_types: Sequence[str], errors: bool,
           unfinished: bool, interleave: bool, values: st.SearchStrategy[Any] | None,
           names: st.SearchStrategy[str] | None = None) -> _Parts:
    if max_children < 0 or max_actions < 0:
        raise ValueError("max_depth, max_children and max_actions must be >= 0")
    if not run_types:
        raise ValueError("run_types must name at least one run type")
    value = st.one_of(st.none(), values if values is not None else chunks())
    leaf = st.one_of(
        st.builds(Stream, value),
        st.builds(Token, st.text(max_size=6), value),
        st.builds(Custom, st.sampled_from(["on_progress", "retry", "cache_hit"]), value))
    endings: list[st.SearchStrategy[Ending]] = [
        st.builds(Ok, value),
        st.builds(Ok, value, st.just(True), value),
    ]
    if errors:
        endings.append(st.builds(
            Fail, st.sampled_from(["ValueError", "TimeoutError", "openai.RateLimitError"]),
            st.text(max_size=10), value))
    if unfinished:
        endings.append(st.just(Unfinished()))
    return _Parts(names if names is not None else _NAMES, st.sampled_from(tuple(run_types)),
                  value,
                  st.lists(leaf, max_size=max_actions), st.one_of(*endings), max_children,
                  interleave)


@st.composite
def _run_spec(draw: st.DrawFn, parts: _Parts,
              children_of: st.SearchStrategy[list[RunSpec]] | None) -> RunSpec:
    name = draw(parts.names)
    run_type = draw(parts.run_types)
    inputs = draw(parts.value)
    tags = draw(_TAG_LISTS)
    metadata = draw(_META)
    actions: list[Action] = list(draw(parts.actions))
    interleave: tuple[int, ...] = ()
    if children_of is not None:
        children = draw(children_of)
        for child in children:
            actions.insert(draw(st.integers(0, len(actions))), Child(child))
        if parts.interleave and children:
            interleave = draw(_SCHEDULES)
    ending = draw(parts.endings)
    return RunSpec(name, run_type, inputs, tags, metadata, tuple(actions), ending, interleave)


def _spec_strategy(max_depth: int, parts: _Parts) -> st.SearchStrategy[RunSpec]:
    if max_depth < 0:
        raise ValueError("max_depth, max_children and max_actions must be >= 0")
    spec = _run_spec(parts, None)
    for _ in range(max_depth if parts.max_children > 0 else 0):
        spec = _run_spec(parts, st.lists(spec, max_size=parts.max_children))
    return spec


def run_specs(*, max_depth: int = 2, max_children: int = 2, max_actions: int = 3,
              run_types: Sequence[str] = RUN_TYPES, errors: bool = True,
              unfinished: bool = True, interleave: bool = True,
              values: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[RunSpec]:
    """One run tree (see :func:`programs` for the knobs)."""
    return _spec_strategy(max_depth, _parts(max_children, max_actions, run_types, errors,
                                            unfinished, interleave, values))


def programs(*, max_roots: int = 2, max_depth: int = 2, max_children: int = 2,
             max_actions: int = 3, run_types: Sequence[str] = RUN_TYPES,
             errors: bool = True, unfinished: bool = True, interleave: bool = True,
             values: st.SearchStrategy[Any] | None = None,
             names: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Program]:
    """Recording programs: what :func:`play` turns into a valid event stream.

    Args:
        max_roots: at most this many traces (root runs); at least one.
        max_depth: how deep runs nest (0: roots only).
        max_children: at most this many children per run.
        max_actions: at most this many stream/token/custom events per run.
        run_types: the run types to draw from (default: every type runlog names).
        errors: allow runs that end with an error (partial outputs kept).
        unfinished: allow runs that never end.
        interleave: allow concurrent runs (sibling runs and traces whose events interleave).
        values: strategy for inputs, outputs and chunks (default :func:`chunks`).
        names: strategy for run names (default: :data:`RUN_NAMES`, then any non-empty
            valid Unicode string, ``/`` included).

    Shrinking goes toward one root, no children, no actions, normal endings, sequential
    order, names from :data:`RUN_NAMES` and empty strings.
    """
    if max_roots < 1:
        raise ValueError("max_roots must be >= 1")
    spec = _spec_strategy(max_depth, _parts(max_children, max_actions, run_types, errors,
                                            unfinished, interleave, values, names))
    roots = st.lists(spec, min_size=1, max_size=max_roots).map(tuple)
    schedule = (st.lists(st.integers(0, 7), max_size=16).map(tuple) if interleave
                else st.just(()))
    return st.builds(Program, roots, schedule)


def filters(*, run_types: Sequence[str] = RUN_TYPES) -> st.SearchStrategy[Filter]:
    """:class:`~runlog.Filter` objects over the names, types, tags and metadata keys that
    :func:`programs` draws from, so they select some runs and drop others."""
    names = st.lists(st.sampled_from(RUN_NAMES), max_size=2)
    types = st.lists(st.sampled_from(tuple(run_types)), max_size=2)
    tags = st.lists(_TAGS, max_size=2)
    meta = st.dictionaries(st.sampled_from(["user", "attempt", "ls_model_name"]),
                           st.one_of(st.just(ANY), st.integers(0, 9)), max_size=1)

    def opt(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(st.none(), s)

    return st.builds(Filter, include_names=opt(names), include_types=opt(types),
                     include_tags=opt(tags), exclude_names=opt(names),
                     exclude_types=opt(types), exclude_tags=opt(tags),
                     include_metadata=opt(meta), exclude_metadata=opt(meta))


@st.composite
def event_streams(draw: st.DrawFn, /, **knobs: Any) -> list[Event]:
    """The committed events of a program played into a fresh in-memory store.

    Takes the keyword arguments of :func:`programs`. Handy for testing a reducer or a
    view on events directly; use :func:`programs` and :func:`play` to test a store.
    """
    from runlog.api import open as open_store

    program = draw(programs(**knobs))
    with open_store(":memory:") as store:
        recording = play(program, store, time_base=1_700_000_000_000_000)
        return recording.events(store)

