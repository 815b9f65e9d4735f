"""The log and events views, fold and state_at on runlog's own events (no LangChain).

LangChain itself is the oracle in ``adapters/langchain/tests`` (differential tests);
here: properties over random valid event streams, and the view rules that matter when
events come from ``store.run`` rather than from LangChain.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import runlog
from runlog.events import Event
from runlog.reducers import (
    RunLog,
    RunLogPatch,
    StateIndex,
    events_view,
    fold,
    log_view,
    view_json_line,
)

NAMES = ["a", "b", "model"]
TYPES = ["chain", "chat_model", "llm", "tool", "prompt", "retriever", "parser"]
TAGS = ["t1", "t2"]


@st.composite
def programs(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """A random, valid sequence of recording actions over a tree of runs."""
    steps: list[tuple[Any, ...]] = []
    open_runs = [0]
    next_id = 1
    for _ in range(draw(st.integers(0, 25))):
        choice = draw(st.sampled_from(["child", "stream", "token", "custom", "end"]))
        run = draw(st.sampled_from(open_runs))
        if choice == "child":
            steps.append(("child", run, next_id, draw(st.sampled_from(NAMES)),
                          draw(st.sampled_from(TYPES)),
                          draw(st.lists(st.sampled_from(TAGS), max_size=2, unique=True)),
                          draw(st.sampled_from([{}, {"k": 1}, {"k": 2}]))))
            open_runs.append(next_id)
            next_id += 1
        elif choice == "stream":
            steps.append(("stream", run, draw(st.one_of(
                st.text(max_size=3), st.integers(0, 3),
                st.dictionaries(st.sampled_from(["x", "y"]), st.text(max_size=2),
                                max_size=2)))))
        elif choice == "token":
            steps.append(("token", run, draw(st.text(min_size=1, max_size=2))))
        elif choice == "custom":
            steps.append(("custom", run, draw(st.sampled_from(["progress", "chain"]))))
        elif run != 0:
            steps.append(("end", run, draw(st.booleans()), draw(st.text(max_size=2))))
            open_runs.remove(run)
    for run in reversed(open_runs):
        steps.append(("end", run, False, "done"))
    return steps


def record(program: list[tuple[Any, ...]], root_type: str = "chain") -> tuple[runlog.Store,
                                                                                list[Event]]:
    store = runlog.open(":memory:")
    runs = {0: store.start_run("root", root_type, inputs={"q": 1}, tags=["t1"])}
    for step in program:
        kind, rid = step[0], step[1]
        run = runs[rid]
        if kind == "child":
            _, _, new, name, rtype, tags, meta = step
            runs[new] = run.start_child(name, rtype, inputs={"i": new}, tags=tags,
                                        metadata=meta)
        elif kind == "stream":
            run.stream(step[2])
        elif kind == "token":
            run.token(step[2], None)
        elif kind == "custom":
            run.event(step[2], {"n": 1})
        elif step[2]:
            run.end(None, error=ValueError(step[3]))
        else:
            run.end(step[3])
    store.flush()
    return store, list(store.events(runs[0].id, descendants=True))


FILTERS = [
    None,
    runlog.Filter(include_names=["a"]),
    runlog.Filter(include_types=["llm"]),
    runlog.Filter(include_tags=["t2"]),
    runlog.Filter(exclude_names=["b"]),
    runlog.Filter(exclude_types=["chain"]),
    runlog.Filter(exclude_tags=["t1"]),
    runlog.Filter(include_metadata={"k": 1}),
    runlog.Filter(exclude_metadata={"k": runlog.ANY}),
]


@settings(max_examples=60, deadline=None)
@given(programs(), st.sampled_from(FILTERS), st.booleans())
def test_fold_equals_incremental_state_and_diff_false(program: list[tuple[Any, ...]],
                                                       flt: runlog.Filter | None,
                                                       with_list: bool) -> None:
    store, events = record(program)
    try:
        patches = list(log_view(events, filter=flt, with_streamed_output_list=with_list))
        # the state built incrementally with the reference applier
        state: Any = None
        cumulative: RunLog | None = None
        for p in patches:
            state = jsonpatch.apply_patch(state, copy.deepcopy(p.ops))
            cumulative = p + RunLogPatch() if cumulative is None else cumulative + p
        assert fold(events, filter=flt, with_streamed_output_list=with_list) == state
        # diff=False states equal the running sum of diff=True patches
        running: RunLog | None = None
        logs = log_view(events, filter=flt, diff=False, with_streamed_output_list=with_list)
        for p, log in zip(patches, logs, strict=True):
            running = p + RunLogPatch() if running is None else running + p
            assert log == running
            assert log.ops_added == p.ops
        assert cumulative is not None
        assert cumulative.state == state
    finally:
        store.close()


def _prefilter(events: list[Event], flt: runlog.Filter) -> list[Event]:
    root = events[0].run_id
    out = []
    for e in events:
        log_type = "llm" if e.run_type == "chat_model" else e.run_type
        if e.run_id == root or flt.matches_run(e.name, log_type, e.tags, e.metadata):
            out.append(e)
    return out


@settings(max_examples=60, deadline=None)
@given(programs(), st.sampled_from([f for f in FILTERS if f is not None]))
def test_filtering_then_folding_equals_filtered_fold(program: list[tuple[Any, ...]],
                                                     flt: runlog.Filter) -> None:
    store, events = record(program)
    try:
        assert fold(_prefilter(events, flt)) == fold(events, filter=flt)
    finally:
        store.close()


@settings(max_examples=40, deadline=None)
@given(programs(), st.data())
def test_state_at_equals_fold_of_prefix(program: list[tuple[Any, ...]],
                                        data: st.DataObject) -> None:
    store, events = record(program)
    try:
        index = StateIndex(lambda after, until: iter(
            [e for e in events if e.seq > after and (until is None or e.seq <= until)]),
            every=2, max_checkpoints=3)
        seqs = data.draw(st.lists(st.sampled_from([e.seq for e in events]), max_size=6))
        for seq in seqs:
            assert index.state_at(seq) == fold([e for e in events if e.seq <= seq])
        assert index.state_at() == fold(events)
    finally:
        store.close()


# ----------------------------------------------------------------------- view rules


def _store_with(build: Any) -> tuple[runlog.Store, str]:
    store = runlog.open(":memory:")
    rid = build(store)
    store.flush()
    return store, rid


def test_log_view_keys_types_and_outputs() -> None:
    def build(store: runlog.Store) -> str:
        with store.run("root", inputs="x") as root:
            for name, rtype, out in [("a", "chain", "s"), ("a", "chat_model", None),
                                     ("p", "prompt", "pv"), ("t", "tool", {"k": 1}),
                                     ("r", "retriever", ["d1"]), ("a", "chain", {"k": 2})]:
                with root.child(name, rtype) as c:
                    if rtype == "chat_model":
                        c.token("h", "CHUNK")
                        c.end({"generations": [[{"text": "h", "message": "M"}]]})
                    else:
                        c.end(out)
            with root.child("bad", "chain") as bad:
                bad.end(None, error=RuntimeError("x"))
            root.stream("A")
            root.stream("B")
            root.end("AB")
        return root.id

    store, rid = _store_with(build)
    state = store.state_at(rid)
    logs = state["logs"]
    assert list(logs) == ["a", "a:2", "p", "t", "r", "a:3", "bad"]
    assert logs["a"]["final_output"] == {"output": "s"}
    assert logs["a:2"]["type"] == "llm"
    assert logs["a:2"]["streamed_output"] == ["CHUNK"]
    assert logs["a:2"]["streamed_output_str"] == ["h"]
    assert logs["p"]["final_output"] == "pv"
    assert logs["t"]["final_output"] == {"output": {"k": 1}}
    assert logs["r"]["final_output"] == {"documents": ["d1"]}
    assert logs["a:3"]["final_output"] == {"k": 2}
    assert logs["bad"]["final_output"] == {}
    assert logs["bad"]["end_time"] is not None
    assert state["streamed_output"] == ["A", "B"]
    assert state["final_output"] == "AB"
    patches = list(store.replay(rid, view="log", filter=runlog.Filter(exclude_names=["a"])))
    assert patches[0].ops[0]["path"] == ""
    assert not any("/logs/a" in op["path"] for p in patches for op in p.ops)
    store.close()


def test_log_view_is_lazy_and_stops_at_root_end() -> None:
    store, rid = _store_with(lambda s: _simple(s))
    events = list(store.events(rid, descendants=True))

    def endless() -> Any:
        yield from events
        raise AssertionError("the view read past the root's end")

    assert len(list(log_view(endless()))) == 4
    assert len(list(events_view(endless()))) == 4
    store.close()


def _simple(store: runlog.Store) -> str:
    with store.run("root", inputs={"q": 1}) as root:
        with root.child("c") as c:
            c.end("x")
        root.end("done")
    return root.id


def test_root_without_chunks_yields_its_output_once() -> None:
    store, rid = _store_with(_simple)
    state = store.state_at(rid)
    assert state["streamed_output"] == ["done"]
    assert state["final_output"] == "done"
    store.close()


def test_events_view_rules() -> None:
    def build(store: runlog.Store) -> str:
        with store.run("root", inputs={"q": 1}, tags=["top"]) as root:
            with root.child("step", inputs={"input": ""}, tags=["seq:step:1"]) as step:
                step.stream("s1")
                step.event("progress", {"pct": 50})
                step.end("out", inputs={"real": True})
            with root.child("tool", "tool", inputs={"x": 1}) as t:
                t.end({"tool_call_id": "c1"}, error=ValueError("bad tool"))
            with root.child("chat", "chat_model", inputs={"messages": [["m"]]}) as m:
                m.token("t", None)
                m.end({"generations": [[{"text": "t", "message": "MSG"}]]})
            root.end("done")
        return root.id

    store, rid = _store_with(build)
    evs = list(store.replay(rid, view="events"))
    names = [e["event"] for e in evs]
    assert names == ["on_chain_start", "on_chain_start", "on_chain_stream", "on_custom_event",
                     "on_chain_end", "on_tool_start", "on_tool_error", "on_chat_model_start",
                     "on_chat_model_stream", "on_chat_model_end", "on_chain_end"]
    assert evs[0]["data"] == {"input": {"q": 1}}
    assert evs[1]["data"] == {}  # streamed-in input placeholder
    assert evs[1]["parent_ids"] == [rid]
    assert evs[3]["tags"] == ["top"]  # custom events carry inheritable tags only
    assert evs[4]["data"] == {"output": "out", "input": {"real": True}}
    err = evs[6]["data"]["error"]
    assert isinstance(err, ValueError)
    assert str(err) == "bad tool"
    assert evs[6]["data"]["tool_call_id"] == "c1"
    assert evs[8]["data"] == {"chunk": "t"}
    assert evs[9]["data"]["output"] == "MSG"
    assert "input" not in evs[-1]["data"]  # the first event's run loses it at the end

    only_progress = list(store.replay(rid, view="events",
                                      filter=runlog.Filter(include_types=["progress"])))
    assert [e["event"] for e in only_progress] == ["on_custom_event"]
    assert only_progress[0]["data"] == {"pct": 50, "input": {"q": 1}}  # root input injected
    no_custom = list(store.replay(rid, view="events",
                                  filter=runlog.Filter(include_types=["chain"])))
    assert "on_custom_event" not in [e["event"] for e in no_custom]
    store.close()


def test_view_json_line_is_deterministic() -> None:
    store, rid = _store_with(_simple)
    for view, opts in [("log", {}), ("log", {"diff": False}), ("events", {})]:
        a = [view_json_line(x) for x in store.replay(rid, view=view, **opts)]  # type: ignore[arg-type]
        b = [view_json_line(x) for x in store.replay(rid, view=view, **opts)]  # type: ignore[arg-type]
        assert a == b
        assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in a)
    store.close()


def test_runlog_type_semantics() -> None:
    p1 = RunLogPatch({"op": "replace", "path": "", "value": {"a": []}})
    p2 = RunLogPatch({"op": "add", "path": "/a/-", "value": 1})
    log = p1 + p2
    assert isinstance(log, RunLog)
    assert log.state == {"a": [1]}
    assert log + p2 == RunLog(*p1.ops, *p2.ops, *p2.ops, state={"a": [1, 1]})
    assert log != RunLogPatch(*log.ops)
    with pytest.raises(TypeError):
        log + log
    with pytest.raises(TypeError):
        p1 + log
    with pytest.raises(TypeError):
        hash(p1)


def test_store_state_at_continues_and_uses_checkpoints() -> None:
    store = runlog.open(":memory:")
    try:
        with store.run("root", inputs={}) as root:
            for i in range(50):
                root.stream(str(i % 10))
            root.end("x")
        events = list(store.events(root.id, descendants=True))
        for e in events[::7]:
            assert store.state_at(root.id, e.seq) == fold(
                [x for x in events if x.seq <= e.seq])
        assert store.state_at(root.id)["final_output"] == "".join(
            str(i % 10) for i in range(50))
        index = StateIndex(lambda after, until: iter(
            [e for e in events if e.seq > after and (until is None or e.seq <= until)]),
            every=10, max_checkpoints=8)
        index.state_at(events[40].seq)
        read = index.events_read
        index.state_at(events[45].seq)  # continues the cursor: 5 more events
        assert index.events_read - read == 5
        read = index.events_read
        index.state_at(events[12].seq)  # an earlier seq: from a checkpoint, not seq 0
        assert index.events_read - read < 12
    finally:
        store.close()


def test_fold_keeps_the_root_string_when_a_none_chunk_leaves_string_mode() -> None:
    """Found by hypothesis (test_fold_matches_the_live_view): strings, then a chunk that
    cannot be added and changes nothing; the fold kept an older string ("")."""
    import jsonpatch

    from runlog.reducers import log_view

    store = runlog.open(":memory:")
    with store.run("rag", run_type="llm") as r:
        r.token("")
        r.token("0")
        r.stream(None)
    evs = list(store.replay(r.id))
    state: Any = None
    for n, patch in enumerate(log_view(iter(evs[:4])), 1):
        state = jsonpatch.apply_patch(state, list(patch.ops), in_place=True)
        assert runlog.fold(evs[:n]) == state
    assert state["final_output"] == "0"
