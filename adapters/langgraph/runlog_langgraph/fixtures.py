"""Recorded agents as offline test fixtures.

An agent is a graph around a chat model and tools; :func:`replay_agent` rebuilds it
around stand-ins that answer with what a recorded run holds
(:func:`runlog_langchain.replay_fixtures`): the model with the recorded messages in the
original chunking, tool calls included, each tool with its recorded result. The agent
under test then runs deterministically with no network::

    agent = runlog_langgraph.replay_agent(store, run_id,
                                          lambda model, tools: create_agent(model, tools))
    assert agent.invoke({"messages": [("user", "1+2?")]})["messages"][-1].content == "3"

A model call or tool call whose input the recording does not hold raises
:class:`runlog_langchain.NotRecordedError` naming that input and the recorded ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from runlog_langchain import Recordings, ReplayChatModel, ReplayTool, replay_fixtures

from runlog import Store

__all__ = ["replay_agent"]

G = TypeVar("G")


def replay_agent(store: Store, run_id: str | Sequence[str],
                 build: Callable[[ReplayChatModel, list[ReplayTool]], G], *,
                 model: str | None = None, realtime: bool = False) -> G:
    """``build(model, tools)`` with the stand-ins of the model and tools recorded under
    ``run_id`` (a graph run, or a list of runs whose recordings are pooled).

    Args:
        build: makes the agent, e.g. ``lambda m, t: create_agent(m, t)`` or
            ``create_react_agent``; the stand-ins are real ``BaseChatModel`` /
            ``BaseTool`` objects (``bind_tools`` works).
        model: the recorded model's name, when the run called several.
        realtime: replay the tokens with their recorded timing.
    """
    rec: Recordings = replay_fixtures(store, run_id)
    return build(rec.chat_model(model, realtime=realtime), rec.tools())
