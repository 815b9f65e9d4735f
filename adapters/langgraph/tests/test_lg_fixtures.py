"""Recorded agents replay offline: the model answers with the recorded messages (tool
calls, original chunking) and the tools with the recorded results; an input the
recording does not hold is a clear error."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import runlog_langgraph as rlg
from langchain_core.messages import AIMessageChunk
from lg_helpers import norm
from lg_scenarios import add, agent_model, langchain_create_agent, mul
from runlog_langchain import NotRecordedError

import runlog

QUESTION = {"messages": [("user", "1+2, 3*4?")]}


def _prebuilt(model: Any, tools: Any) -> Any:
    from langgraph.prebuilt import create_react_agent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_react_agent(model, tools)


def _chunks(items: list[Any]) -> list[Any]:
    """The model's streamed chunks (content, tool call chunks), in order, per node."""
    return [(meta["langgraph_node"], c.content, norm(c.tool_call_chunks))
            for c, meta in items if isinstance(c, AIMessageChunk)]


def create_agent(model: Any, tools: Any) -> Any:
    return langchain_create_agent()(model, tools)


@pytest.mark.parametrize("build", [create_agent, _prebuilt], ids=["create_agent",
                                                                  "prebuilt"])
def test_a_recorded_agent_replays_offline(lg_store: runlog.Store, build: Any) -> None:
    with rlg.record(lg_store) as rec:
        live = list(build(agent_model(), [add, mul]).stream(
            QUESTION, stream_mode=["updates", "messages"]))
    (rid,) = rec.graph_ids
    agent = rlg.replay_agent(lg_store, rid, build)
    replayed = list(agent.stream(QUESTION, stream_mode=["updates", "messages"]))
    updates = [c for m, c in live if m == "updates"]
    got_updates = [c for m, c in replayed if m == "updates"]
    # the two tool calls run as parallel tasks: their updates may come in either order
    assert sorted(repr(x) for x in norm(got_updates)) == sorted(repr(x) for x in norm(updates))
    assert _chunks([c for m, c in replayed if m == "messages"]) == _chunks(
        [c for m, c in live if m == "messages"])
    final = agent.invoke(QUESTION)["messages"][-1]
    assert final.content == "1 + 2 is 3 and 3 * 4 is 12"


def test_an_unrecorded_question_is_a_clear_error(lg_store: runlog.Store) -> None:
    with rlg.record(lg_store) as rec:
        _prebuilt(agent_model(), [add, mul]).invoke(QUESTION)
    agent = rlg.replay_agent(lg_store, rec.graph_ids[0], _prebuilt)
    with pytest.raises(NotRecordedError, match="never recorded"):
        agent.invoke({"messages": [("user", "what is 2+2?")]})
