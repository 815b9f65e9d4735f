"""Every way an application runs a graph is recorded, and its own output is unchanged:
invoke/ainvoke/batch/abatch, astream (the async scenario), a GraphRecorder passed per
call in ``callbacks``, a graph inside a LangChain chain, LangChain's astream_events."""

from __future__ import annotations

from typing import Any

import pytest
import runlog_langgraph as rlg
from langgraph.types import Command
from lg_helpers import norm, same
from lg_scenarios import (
    LOG_IN,
    MSG_IN,
    chat,
    in_chain,
    interrupt_resume,
    react_prebuilt,
    subgraph,
    two_node,
)

import runlog


def test_invoke_is_recorded_and_unchanged(lg_store: runlog.Store) -> None:
    plain = two_node().invoke(LOG_IN)
    with rlg.record(lg_store) as rec:
        out = two_node().invoke(LOG_IN)
    assert out == plain == {"log": ["a", "b"]}
    (rid,) = rec.graph_ids
    # invoke asked LangGraph for ["updates", "values"]: that is what replays by default
    assert list(rlg.stream(lg_store, rid, stream_mode="values"))[-1] == out
    assert rlg.state(lg_store, rid) == out
    assert rlg.state(lg_store, rid, step=0) == {"log": []}
    assert rlg.state(lg_store, rid, step=1) == {"log": ["a"]}
    with pytest.raises(KeyError):
        rlg.state(lg_store, rid, step=7)


def test_interrupt_resume_invoke(lg_store: runlog.Store) -> None:
    graph = interrupt_resume()
    cfg = {"configurable": {"thread_id": "th-1"}}
    with rlg.record(lg_store) as rec:
        first = graph.invoke(LOG_IN, cfg)
        second = graph.invoke(Command(resume="yes"), cfg)
    assert "__interrupt__" in first
    assert second == {"log": ["a", "answer:yes", "b"]}
    a, b = rec.graph_ids
    # invoke lists the interrupts its updates stream carried as a tuple
    assert list(rlg.stream(lg_store, a, stream_mode="updates"))[-1] == {
        "__interrupt__": tuple(first["__interrupt__"])}
    assert rlg.state(lg_store, b) == second


def test_batch_records_each_input(lg_store: runlog.Store) -> None:
    with rlg.record(lg_store) as rec:
        outs = two_node().batch([LOG_IN, {"log": ["x"]}])
    assert outs == [{"log": ["a", "b"]}, {"log": ["x", "a", "b"]}]
    finals = sorted(repr(rlg.state(lg_store, r)) for r in rec.graph_ids)
    assert finals == sorted(repr(o) for o in outs)


def test_callbacks_per_call(lg_store: runlog.Store) -> None:
    rec = rlg.GraphRecorder(lg_store)
    live = list(two_node().stream(LOG_IN, {"callbacks": [rec]}, stream_mode="updates"))
    lg_store.flush()
    (rid,) = rec.graph_ids
    assert list(rlg.stream(lg_store, rid)) == live
    # no recorder, nothing recorded: the wrappers only call LangGraph
    list(two_node().stream(LOG_IN))
    assert rec.graph_ids == [rid]


def test_graph_inside_a_chain(lg_store: runlog.Store) -> None:
    plain = in_chain(chat()).invoke("hi")
    with rlg.record(lg_store) as rec:
        out = in_chain(chat()).invoke("hi")
    assert out == plain == "Fine, thanks for asking."
    (rid,) = rec.graph_ids
    info = lg_store.run_info(rid)
    assert info.parent_id is not None  # the graph is a child of the chain's run
    live = list(chat().stream({"messages": [("user", "hi")]}, stream_mode="updates"))
    assert norm(list(rlg.stream(lg_store, rid, stream_mode="updates"))) == norm(live)


@pytest.mark.anyio
async def test_async_scenario(lg_store: runlog.Store) -> None:
    for mode, sub in (("messages", False), (list(rlg.ALL_MODES), True), ("values", False)):
        graph = subgraph()
        async with rlg.arecord(lg_store) as rec:
            live = [p async for p in graph.astream(MSG_IN, stream_mode=mode, subgraphs=sub)]
        rid = rec.graph_ids[-1]
        assert [p async for p in rlg.astream(lg_store, rid)] == live
        assert list(rlg.stream(lg_store, rid)) == live


@pytest.mark.anyio
async def test_ainvoke_and_abatch(lg_store: runlog.Store) -> None:
    async with rlg.arecord(lg_store) as rec:
        out = await react_prebuilt().ainvoke({"messages": [("user", "1+2, 3*4?")]})
        outs = await two_node().abatch([LOG_IN, LOG_IN])
    assert out["messages"][-1].content == "1 + 2 is 3 and 3 * 4 is 12"
    assert outs == [{"log": ["a", "b"]}] * 2
    assert len(rec.graph_ids) == 3
    assert rlg.state(lg_store, rec.graph_ids[0]) == out


@pytest.mark.anyio
async def test_langchain_astream_events_unchanged(lg_store: runlog.Store) -> None:
    """LangChain's own astream_events on a graph yields the same events (names, types,
    data) with the recorder attached."""
    def shape(evs: list[Any]) -> list[Any]:
        return [(e["event"], e["name"], norm(e["data"].get("chunk"))) for e in evs]

    plain = [e async for e in chat().astream_events(MSG_IN, version="v2")]
    async with rlg.arecord(lg_store) as rec:
        recorded = [e async for e in chat().astream_events(MSG_IN, version="v2")]
    assert same(shape(recorded), shape(plain))
    (rid,) = rec.graph_ids
    assert rlg.state(lg_store, rid)["messages"][-1].content == "Fine, thanks for asking."
