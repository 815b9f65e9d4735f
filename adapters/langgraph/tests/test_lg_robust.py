"""Recording never changes or breaks the application, and what it stores folds back to
exactly what was streamed (property test over arbitrary part sequences)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict
from uuid import UUID

import runlog_langgraph as rlg
from hypothesis import given, settings
from hypothesis import strategies as st
from langgraph.graph import START, StateGraph
from lg_scenarios import LOG_IN, two_node
from runlog_langgraph.recorder import GraphRecorder, GraphStream
from runlog_langgraph.replay import _Folder

import runlog
from runlog import codec
from runlog.ids import uuid7


class Thing:
    """A class the codec does not know: its values cannot be stored as they are."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Thing) and other.n == self.n

    __hash__ = None  # type: ignore[assignment]


class Odd(TypedDict):
    items: Annotated[list[Any], operator.add]


def test_unencodable_state_is_counted_not_raised(lg_store: runlog.Store) -> None:
    graph = (StateGraph(Odd).add_node("a", lambda s: {"items": [Thing(1)]})
             .add_edge(START, "a").compile())
    plain = graph.invoke({"items": []})
    with rlg.record(lg_store) as rec:
        out = graph.invoke({"items": []})
    assert out == plain == {"items": [Thing(1)]}
    assert rec.failures > 0  # logged and counted; the parts were stored lossy
    (rid,) = rec.graph_ids
    last = rlg.state(lg_store, rid)["items"][0]
    assert isinstance(last, runlog.Opaque)  # a documented, visible loss


def test_a_closed_store_leaves_the_app_alone(tmp_path: Any) -> None:
    store = runlog.open(str(tmp_path / "closed.db"))
    store.close()
    with rlg.record(store) as rec:
        assert two_node().invoke(LOG_IN) == {"log": ["a", "b"]}
    assert rec.failures >= 1


states = st.recursive(
    st.none() | st.integers(-5, 5) | st.text(max_size=4) | st.booleans(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["a", "b", "messages", "x/y", "~"]), kids, max_size=3),
    max_leaves=12)
namespaces = st.sampled_from([(), ("child:1",), ("child:1", "inner:2")])
parts = st.one_of(
    st.tuples(namespaces, st.just("values"), states),
    st.tuples(namespaces, st.just("updates"), st.dictionaries(st.just("n"), states)),
    st.tuples(namespaces, st.just("tasks"), st.fixed_dictionaries(
        {"id": st.text(max_size=3), "name": st.just("n"), "input": states,
         "triggers": st.tuples(st.text(max_size=3)) | st.lists(st.text(max_size=2))})),
    st.tuples(namespaces, st.just("checkpoints"), st.fixed_dictionaries(
        {"values": states, "next": st.lists(st.text(max_size=2), max_size=2)})),
    st.tuples(namespaces, st.just("debug"), st.fixed_dictionaries(
        {"step": st.integers(0, 9), "type": st.just("task"),
         "payload": st.fixed_dictionaries({"id": st.text(max_size=2), "input": states})})),
)


class _Sink(GraphRecorder):
    """Keeps what would be stored, through the codec, instead of writing a store."""

    def __init__(self) -> None:
        self.graph_ids: list[str] = []
        self.kept: list[tuple[str, Any]] = []
        self.failures = 0
        self._tokens: dict[int, Any] = {}

    def emit(self, run_id: UUID, name: str, data: Any) -> bool:
        self.kept.append((name, codec.decode(codec.encode(data))))
        return True


META = [{"langgraph_node": "a", "langgraph_triggers": ("t",)}, {"langgraph_node": "b"}]


def _with_echoes(seq: list[Any], echoes: list[int]) -> list[Any]:
    """LangGraph's own redundancy: a debug part whose payload is the tasks chunk just
    streamed (the same object), and runs of message tokens sharing one metadata dict."""
    out: list[Any] = []
    for (ns, mode, chunk), echo in zip(seq, echoes + [0] * len(seq), strict=False):
        out.append((ns, mode, chunk))
        if mode in ("tasks", "checkpoints") and echo:
            if echo == 3:  # another thread's part between a task and its debug twin
                out.append((ns, "custom", "between"))
            out.append((ns, "debug", {"step": 1, "timestamp": "t", "type": "task"
                                      if mode == "tasks" else "checkpoint",
                                      "payload": chunk}))
        elif echo:
            for i in range(echo if echo < 6 else 70):  # 70: past the 64 of one event
                out.append((ns, "messages", (f"tok{i}", META[echo % 2])))
    return out


class _TokenFolder(_Folder):
    """Reads the token events from a dict instead of a store."""

    def __init__(self, events: dict[tuple[str, int], Any]) -> None:
        super().__init__(None)
        self.events = events

    def token(self, run_id: str, index: int) -> Any:
        return self.events[(run_id, index)]


@settings(max_examples=300)
@given(st.lists(parts, max_size=12), st.lists(st.integers(0, 6), max_size=12),
       st.lists(st.booleans(), max_size=40))
def test_stored_parts_fold_back_to_the_streamed_parts(seq: list[Any], echoes: list[int],
                                                      as_token: list[bool]) -> None:
    """Every part comes back, in order, whatever is stored compactly: state patches,
    debug twins inside their task's event, and token parts stored as nothing but
    their model run's token event (here: the ones ``as_token`` picks), placed by a
    later event's ``pre``, by a ``{"ns", "pre"}`` event every 64, or by the flush."""
    sink = _Sink()
    gs = GraphStream(sink, UUID(str(uuid7())), {"modes": rlg.ALL_MODES})
    expected = []
    events: dict[tuple[str, int], Any] = {}
    counts: dict[UUID, int] = {}
    picks = iter(as_token * 4)
    parts_in = _with_echoes(seq, echoes)
    for ns, mode, chunk in parts_in:
        if mode == "messages" and next(picks, False):
            # the model run's token event, recorded first (as the recorder's callback does)
            model = _MODELS[(ns, chunk[1]["langgraph_node"])]
            n = counts.get(model, 0)
            counts[model] = n + 1
            events[(str(model), n)] = chunk[0]
            sink._tokens[id(chunk[0])] = (chunk[0], model, n, None)
        gs.part(ns, mode, chunk)
        expected.append(codec.encode((ns, mode, chunk)))  # the bytes of what was streamed
    gs.flush()
    folder = _TokenFolder(events)
    got = [codec.encode(p) for name, data in sink.kept[1:]  # [0] is the call record
           for p in folder.parts(name.split(":", 1)[1], data)]
    assert got == expected


_MODELS = {(ns, node): UUID(str(uuid7())) for ns in [(), ("child:1",), ("child:1", "inner:2")]
           for node in ("a", "b")}
