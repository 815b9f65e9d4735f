"""v3 protocol: the events of ``stream_events(version="v3")`` replay from the log as
LangGraph emitted them (same seq, method, params), filtered by channel and namespace
prefix as ``langchain_protocol`` defines it, resumable with ``since``."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import runlog_langgraph as rlg
from lg_helpers import assert_resumes, config_for, same
from lg_scenarios import SCENARIOS, Scenario, subgraph

import runlog

pytestmark = pytest.mark.filterwarnings(
    "ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")


def _record_v3(store: runlog.Store, sc: Scenario) -> tuple[rlg.GraphRecorder, list[Any]]:
    graph = sc.build()
    runs: list[Any] = []
    with rlg.record(store) as rec:
        for inp in sc.calls:
            run = graph.stream_events(inp, config_for(sc), version="v3")
            events: list[Any] = []
            try:
                for ev in run:
                    # what the consumer saw when it got the event: LangGraph's
                    # add_messages later assigns ids to messages in place (a ToolMessage
                    # of a tool-finished event), which would change the live list
                    events.append(copy.deepcopy(ev))
            except Exception as e:
                events.append(e)
            runs.append(events)
    assert rec.failures == 0, rec.last_error
    return rec, runs


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_v3_replay_equals_live(lg_store: runlog.Store, sc: Scenario) -> None:
    rec, runs = _record_v3(lg_store, sc)
    assert len(rec.graph_ids) == len(sc.calls)
    for events, rid in zip(runs, rec.graph_ids, strict=True):
        live = [e for e in events if isinstance(e, dict)]
        assert live, "LangGraph emitted no v3 event"
        got = list(rlg.stream_events(lg_store, rid))
        assert got == live or same(got, live)
        assert [e["seq"] for e in got] == list(range(1, len(got) + 1))
        # the graph's run is ended after its last protocol event, as it ended live
        assert lg_store.run_info(rid).status == ("error" if sc.raises else "ok")


def _channel(ev: dict[str, Any]) -> str:
    m = ev["method"]
    return "input" if m.startswith("input.") else m


def test_v3_filters_and_since(lg_store: runlog.Store) -> None:
    sc = next(s for s in SCENARIOS if s.name == "subgraph")
    rec, runs = _record_v3(lg_store, sc)
    live, rid = runs[0], rec.graph_ids[0]
    seqs = [e["seq"] for e in live]
    for since in (0, 1, seqs[len(seqs) // 2], seqs[-1]):
        assert list(rlg.stream_events(lg_store, rid, since=since)) == [
            e for e in live if e["seq"] > since]
    for chans in (["values"], ["messages", "lifecycle"], ["custom"], ["updates"]):
        assert list(rlg.stream_events(lg_store, rid, channels=chans)) == [
            e for e in live if _channel(e) in chans]
    child = next(e["params"]["namespace"] for e in live if e["params"]["namespace"])
    assert list(rlg.stream_events(lg_store, rid, namespace=child)) == [
        e for e in live if e["params"]["namespace"][:len(child)] == child]
    assert list(rlg.stream_events(lg_store, rid, namespace=[])) == live
    assert_resumes(lg_store, rid, live)


@pytest.mark.anyio
async def test_v3_async(lg_store: runlog.Store) -> None:
    graph = subgraph()
    async with rlg.arecord(lg_store) as rec:
        run = await graph.astream_events({"messages": [("user", "hi")]}, version="v3")
        live = [ev async for ev in run]
    assert rec.failures == 0
    assert list(rlg.stream_events(lg_store, rec.graph_ids[0])) == live


def test_v3_bad_arguments(lg_store: runlog.Store) -> None:
    sc = next(s for s in SCENARIOS if s.name == "two_node")
    rec, _ = _record_v3(lg_store, sc)
    with pytest.raises(ValueError, match="v3"):
        list(rlg.stream_events(lg_store, rec.graph_ids[0], version="v2"))
    with pytest.raises(rlg.NotAGraphRunError):
        list(rlg.stream(lg_store, rec.graph_ids[0]))
    # a run that is no graph's (a LangChain chain's) holds no LangGraph stream; a plain
    # call's run does, and replays as v3 (test_lg_v3_derived_lgv3.py)
    from langchain_core.runnables import RunnableLambda
    with rlg.record(lg_store):
        RunnableLambda(lambda x: x).invoke(1)
    (chain,) = [r.run_id for r in lg_store.runs(roots_only=True)
                if r.run_id not in rec.graph_ids]
    with pytest.raises(rlg.NotAGraphRunError):
        list(rlg.stream_events(lg_store, chain))


def test_v3_stream_dropped_half_read_still_ends_the_run(lg_store: runlog.Store) -> None:
    import gc

    sc = next(s for s in SCENARIOS if s.name == "subgraph")
    with rlg.record(lg_store) as rec:
        run = sc.build().stream_events(sc.calls[0], version="v3")
        first = [ev for _, ev in zip(range(3), run, strict=False)]
        del run
        gc.collect()
    (rid,) = rec.graph_ids
    assert lg_store.run_info(rid).status != "running"
    assert list(rlg.stream_events(lg_store, rid))[:3] == first
