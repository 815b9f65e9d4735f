"""v3 protocol events of runs recorded through plain calls (``stream``, ``invoke``,
``astream``): ``runlog_langgraph.stream_events(store, run_id)`` derives them from the
stored parts with LangGraph's own run stream and transformers, and they must be what
LangGraph's own ``stream_events(version="v3")`` yields for the same graph and input.

Differential against LangGraph: the scenario is recorded by a plain call (``stream``,
``invoke``, a v2 ``stream`` of ``messages`` only), then run
again live with ``stream_events(version="v3")`` (a second run), and the two event lists
are compared with ``==`` after blanking what differs between any two live runs
(``lg_helpers.norm`` plus ``trigger_call_id``): ``params.timestamp`` (compared here as
LangGraph defines it: integer milliseconds, non-decreasing, within the recorded call),
message ids (``lc_run-<model run id>``, uuids given by ``add_messages``), the
metadata's ``run_id``/checkpoint namespace/path, the task ids in namespaces and in
lifecycle events' ``trigger_call_id``, checkpoint ids, interrupt ids. Everything else is
compared as is: ``type``, ``method``, ``seq`` (the same numbering), the namespace's
node names, ``params.data`` (states with the model's message as the v3 path builds it,
message protocol events with their content blocks, deltas, usage, metadata),
``interrupts``. Where parallel branches' order varies between two live runs
(``Scenario.parallel``), the events are compared as multisets and their ``seq`` as the
same ``1..n``.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
import runlog_langgraph as rlg
from lg_helpers import assert_resumes, config_for, norm
from lg_scenarios import SCENARIOS, Scenario, subgraph

import runlog

pytestmark = pytest.mark.filterwarnings(
    "ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")


def _norm(value: Any) -> Any:
    out = norm(value)
    return _blank(out)


def _blank(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "*" if k == "trigger_call_id" else _blank(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_blank(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_blank(v) for v in value)
    return value


def _live_v3(sc: Scenario, thread: str = "v3") -> list[list[dict[str, Any]]]:
    graph = sc.build()
    runs = []
    for inp in sc.calls:
        events: list[dict[str, Any]] = []
        try:
            for ev in graph.stream_events(inp, config_for(sc, thread), version="v3"):
                events.append(ev)
        except Exception:
            pass
        runs.append(events)
    return runs


def _record_plain(store: runlog.Store, sc: Scenario, how: str
                  ) -> tuple[list[str], float, float]:
    graph = sc.build()
    t0 = time.time() * 1000
    with rlg.record(store) as rec:
        for inp in sc.calls:
            try:
                if how == "invoke":
                    graph.invoke(inp, config_for(sc))
                elif how == "stream-v2":
                    list(graph.stream(inp, config_for(sc), stream_mode="messages",
                                      version="v2"))
                else:
                    list(graph.stream(inp, config_for(sc)))
            except Exception:
                pass
    t1 = time.time() * 1000
    assert rec.failures == 0, rec.last_error
    assert len(rec.graph_ids) == len(sc.calls)
    return rec.graph_ids, t0, t1


def _compare(sc: Scenario, got: list[dict[str, Any]], live: list[dict[str, Any]]) -> None:
    assert live, "LangGraph emitted no v3 event"
    assert [e["seq"] for e in got] == list(range(1, len(got) + 1))
    if sc.parallel:
        def bag(evs: list[dict[str, Any]]) -> Counter[str]:
            return Counter(repr(_norm({k: v for k, v in e.items() if k != "seq"}))
                           for e in evs)
        assert bag(got) == bag(live)
        assert sorted(e["seq"] for e in live) == [e["seq"] for e in got]
    else:
        assert _norm(got) == _norm(live)


@pytest.mark.parametrize("how", ["stream", "invoke", "stream-v2"])
@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_derived_v3_equals_langgraph_v3(lg_store: runlog.Store, sc: Scenario,
                                        how: str) -> None:
    rids, t0, t1 = _record_plain(lg_store, sc, how)
    for rid, live in zip(rids, _live_v3(sc), strict=True):
        got = list(rlg.stream_events(lg_store, rid))
        _compare(sc, got, live)
        stamps = [e["params"]["timestamp"] for e in got]
        assert all(type(t) is int and t0 - 1 <= t <= t1 + 1 for t in stamps)
        if not sc.parallel:
            assert stamps == sorted(stamps)
        # a second replay gives the same events (nothing depends on the replay's time)
        assert list(rlg.stream_events(lg_store, rid)) == got


def test_derived_v3_model_messages_are_the_v3_ones(lg_store: runlog.Store) -> None:
    """The message events and the model's message in the state are the v3 path's
    (content blocks), not the v1 ones the plain call streamed; the test fails if the
    replay passes the v1 chunks or the v1 message through."""
    sc = next(s for s in SCENARIOS if s.name == "add_messages")
    (rid,), _, _ = _record_plain(lg_store, sc, "stream")
    got = list(rlg.stream_events(lg_store, rid))
    kinds = [e["params"]["data"][0]["event"] for e in got if e["method"] == "messages"]
    assert kinds[:3] == ["message-start", "content-block-start", "content-block-delta"]
    assert kinds.count("message-finish") == 2
    last = [e for e in got if e["method"] == "values"][-1]["params"]["data"]["messages"]
    assert last[1].content == [{"type": "text", "text": "Hello there, how are you?",
                                "index": 0}]
    start = next(e for e in got if e["method"] == "messages")
    model_run = start["params"]["data"][1]["run_id"]
    assert start["params"]["data"][0]["id"] == f"lc_run--{model_run}"
    assert last[1].id == f"lc_run--{model_run}"
    assert lg_store.run_info(model_run).run_type == "chat_model"


def test_derived_v3_filters_and_since(lg_store: runlog.Store) -> None:
    sc = next(s for s in SCENARIOS if s.name == "subgraph")
    (rid,), _, _ = _record_plain(lg_store, sc, "stream")
    full = list(rlg.stream_events(lg_store, rid))
    (live,) = _live_v3(sc)
    seqs = [e["seq"] for e in full]
    for since in (0, 1, seqs[len(seqs) // 2], seqs[-1]):
        assert list(rlg.stream_events(lg_store, rid, since=since)) == [
            e for e in full if e["seq"] > since]
    for chans in (["values"], ["messages", "lifecycle"], ["custom"], ["updates"]):
        def on(evs: list[dict[str, Any]], chans: list[str] = chans) -> list[Any]:
            return [e for e in evs if e["method"] in chans]
        got = list(rlg.stream_events(lg_store, rid, channels=chans))
        assert got == on(full)
        assert _norm(got) == _norm(on(live))
    child = next(e["params"]["namespace"] for e in full if e["params"]["namespace"])
    below = list(rlg.stream_events(lg_store, rid, namespace=child))
    assert below
    assert below == [e for e in full if e["params"]["namespace"][:len(child)] == child]
    assert list(rlg.stream_events(lg_store, rid, namespace=[])) == full
    assert_resumes(lg_store, rid, full)


@pytest.mark.anyio
async def test_derived_v3_of_an_astream_run(lg_store: runlog.Store) -> None:
    graph = subgraph()
    async with rlg.arecord(lg_store) as rec:
        async for _ in graph.astream({"messages": [("user", "hi")]}, stream_mode="values"):
            pass
    assert rec.failures == 0
    live = [ev async for ev in await subgraph().astream_events(
        {"messages": [("user", "hi")]}, version="v3")]
    got = list(rlg.stream_events(lg_store, rec.graph_ids[0]))
    assert _norm(got) == _norm(live)


def test_incremental_bridge_equals_langchain_cores() -> None:
    """The chunk-by-chunk conversion gives what langchain-core's ``chunks_to_events``
    gives for the same chunks (text, two interleaved tool calls, usage, metadata)."""
    from langchain_core.language_models._compat_bridge import chunks_to_events
    from langchain_core.messages import AIMessageChunk
    from langchain_core.outputs import ChatGenerationChunk
    from runlog_langgraph.v3derive import _ModelEvents

    def chunks() -> list[AIMessageChunk]:
        return [
            AIMessageChunk(content="Hel", response_metadata={"model_name": "m1"}),
            AIMessageChunk(content="lo", tool_call_chunks=[
                {"name": "add", "args": '{"a": ', "id": "c1", "index": 1}]),
            AIMessageChunk(content="", tool_call_chunks=[
                {"name": "mul", "args": '{"b": 2}', "id": "c2", "index": 2}]),
            AIMessageChunk(content="", tool_call_chunks=[
                {"name": None, "args": "1}", "id": None, "index": 1}],
                usage_metadata={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7},
                additional_kwargs={"k": "v"}),
            AIMessageChunk(content="", chunk_position="last",
                           response_metadata={"finish_reason": "stop"}),
        ]

    want = list(chunks_to_events((ChatGenerationChunk(message=c) for c in chunks()),
                                 message_id="lc_run--x"))
    model = _ModelEvents("lc_run--x")
    got = [ev for c in chunks() for ev in model.feed(c)] + model.finish()
    assert got == want
    assert model.message() is not None


def test_derived_v3_follows_a_run_recorded_by_another_process(tmp_path: Any) -> None:
    """Derived v3 events of a plain ``stream`` call still being recorded by another
    process come as it runs, and are those of the finished run, none skipped or
    repeated (the timestamps are the stored parts' times, so they are equal too)."""
    import subprocess
    import sys
    from pathlib import Path

    from runlog.ids import uuid7

    here = Path(__file__).parent
    db, out, rid = str(tmp_path / "live.db"), tmp_path / "live.out", str(uuid7())
    runlog.open(db).close()
    proc = subprocess.Popen([sys.executable, str(here / "lg_live_writer.py"), db, rid,
                             str(out), "stream"], cwd=str(here))
    try:
        with runlog.open(db) as store:
            it = rlg.stream_events(store, rid)
            got = [next(it)]
            assert store.run_info(rid).status == "running"
            Path(str(out) + ".go").touch()
            got.extend(it)
            assert proc.wait(timeout=120) == 0
            assert got == list(rlg.stream_events(store, rid))
            assert [e["method"] for e in got] == ["values"] * 3
            assert [e["seq"] for e in got] == [1, 2, 3]
    finally:
        if proc.poll() is None:
            proc.kill()


def _tool_graph(transformers: list[Any]) -> Any:
    """A ReAct loop compiled with v3 stream transformers of its own (as ``create_agent``
    compiles ``ToolCallTransformer``): its v3 stream has a ``tools`` channel."""
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition
    from lg_scenarios import add, agent_model, mul

    model = agent_model()

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    return (StateGraph(MessagesState).add_node("agent", agent)
            .add_node("tools", ToolNode([add, mul])).add_edge(START, "agent")
            .add_conditional_edges("agent", tools_condition).add_edge("tools", "agent")
            .compile(transformers=transformers))


def test_derived_v3_with_the_graphs_tool_call_transformer(lg_store: runlog.Store) -> None:
    """The graph's compiled ``ToolCallTransformer`` runs in the replay too (its
    ``tools`` events, from the recorded ``tools`` parts), as in LangGraph's v3 call;
    the ``tools`` mode itself replays as a live ``stream_mode="tools"`` gives it."""
    import copy

    from langgraph.prebuilt import ToolCallTransformer

    x = {"messages": [("user", "1+2, 3*4?")]}
    with rlg.record(lg_store) as rec:
        # what the consumer saw when it got the part (add_messages later gives the
        # ToolMessage of a tool-finished part an id, in place)
        live_tools = [copy.deepcopy(p) for p in _tool_graph([ToolCallTransformer]).stream(
            x, stream_mode="tools")]
    assert rec.failures == 0, rec.last_error
    (rid,) = rec.graph_ids
    assert {p["event"] for p in live_tools} == {"tool-started", "tool-finished"}
    assert list(rlg.stream(lg_store, rid)) == live_tools
    live = list(_tool_graph([ToolCallTransformer]).stream_events(x, version="v3"))
    assert any(e["method"] == "tools" for e in live)
    sc = Scenario("tools", lambda: None, [x], parallel=True)  # the two tools: threads
    _compare(sc, list(rlg.stream_events(lg_store, rid)), live)


def test_derived_v3_refuses_an_unknown_transformer(lg_store: runlog.Store) -> None:
    """A transformer of the application's own is not run by a replay: the derived
    events would lack its events, so the replay says so instead."""
    from langgraph.stream import StreamTransformer

    class Mine(StreamTransformer):
        def init(self) -> dict[str, Any]:
            return {}

        def process(self, event: Any) -> bool:
            return True

    with rlg.record(lg_store) as rec:
        _tool_graph([Mine]).invoke({"messages": [("user", "1+2, 3*4?")]})
    with pytest.raises(rlg.NotAGraphRunError, match="Mine"):
        list(rlg.stream_events(lg_store, rec.graph_ids[0]))
    assert list(rlg.stream(lg_store, rec.graph_ids[0], stream_mode="values"))
