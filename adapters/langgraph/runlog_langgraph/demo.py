"""``runlog demo --agent``: an offline ReAct agent recorded and replayed from the log.

The agent is LangGraph's prebuilt ReAct loop around a fake tool-calling chat model
(:class:`FakeToolCallingModel`, no network) and two tools, ``add`` and ``multiply``.
It is recorded with :func:`runlog_langgraph.record` while the application streams its
``updates``; then the stored run tree (node runs, model tokens, tool calls), the graph
steps (nodes, state diff, interrupts), and the replay of its ``updates`` and
``messages`` streams from the store are printed.
"""

from __future__ import annotations

import itertools
import json
import time
import warnings
from collections.abc import Iterator
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.tools import BaseTool, tool
from rich.console import Console
from rich.markup import escape

from runlog import Store
from runlog.cli.render import run_tree, short
from runlog.reducers.graph import graph_records, graph_steps
from runlog_langgraph.context import record
from runlog_langgraph.replay import stream

__all__ = ["QUESTION", "FakeToolCallingModel", "build_agent", "demo_tools", "run_demo"]

QUESTION = "What is (3 + 4) * 6?"


class FakeToolCallingModel(GenericFakeChatModel):
    """``GenericFakeChatModel`` that accepts ``bind_tools`` (and ignores the tools) and
    streams a message with tool calls as one chunk of ``tool_call_chunks`` (the generic
    fake streams nothing for a message without text, which LangChain rejects)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> FakeToolCallingModel:
        return self

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: Any = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        message = next(self.messages)
        if isinstance(message, AIMessage) and message.tool_calls:
            chunk = ChatGenerationChunk(message=AIMessageChunk(
                content=message.content, id=message.id, tool_call_chunks=[
                    {"name": tc["name"], "args": json.dumps(tc["args"]), "id": tc["id"],
                     "index": i} for i, tc in enumerate(message.tool_calls)]))
            if run_manager is not None:
                run_manager.on_llm_new_token("", chunk=chunk)
            yield chunk
            return
        self.messages = itertools.chain([message], self.messages)
        yield from super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs)


def demo_tools() -> list[BaseTool]:
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @tool
    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        return a * b

    return [add, multiply]


def build_agent() -> Any:
    """The demo agent: three model turns (add, then multiply, then the answer)."""
    from langgraph.prebuilt import create_react_agent

    model = FakeToolCallingModel(messages=iter([
        AIMessage("", tool_calls=[{"name": "add", "args": {"a": 3, "b": 4},
                                   "id": "call_add"}]),
        AIMessage("", tool_calls=[{"name": "multiply", "args": {"a": 7, "b": 6},
                                   "id": "call_multiply"}]),
        AIMessage("(3 + 4) * 6 is 42."),
    ]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # moved to langchain.agents; still shipped
        return create_react_agent(model, demo_tools())


def _describe(update: Any) -> str:
    parts = []
    for node, value in (update.items() if isinstance(update, dict) else []):
        msgs = value.get("messages", []) if isinstance(value, dict) else []
        for m in msgs:
            calls = getattr(m, "tool_calls", None)
            text = (f"tool calls {[(c['name'], c['args']) for c in calls]}" if calls
                    else repr(m.content))
            parts.append(f"{node}: {type(m).__name__} {text}")
    return "; ".join(parts) or short(update)


def run_demo(store: Store, *, delay: float = 0.0, out: Console | None = None) -> str:
    """Record the demo agent into ``store``, print what it shows; return the graph id."""
    out = out or Console(highlight=False)
    out.print(f"[bold]Recording a ReAct agent into[/] {store.location}\n")
    out.print("[dim]live: agent.stream(..., stream_mode=\"updates\"), recorded by "
              "runlog_langgraph.record:[/]")
    with record(store) as rec:
        for update in build_agent().stream({"messages": [("user", QUESTION)]},
                                           stream_mode="updates"):
            out.print(f"  {escape(_describe(update))}")
            if delay:
                time.sleep(delay)
    if rec.failures:
        out.print(f"[red]{rec.failures} recording failure(s): {rec.last_error}[/]")
    gid = rec.graph_ids[0]

    out.print("\n[bold]Stored run tree[/]")
    info = store.run_info(gid)
    runs = store.trace_runs(info.trace_id)
    outputs = {e.run_id: e.data for e in store.events(gid, descendants=True)
               if e.kind == "end"}
    out.print(run_tree(runs, info.trace_id, outputs, {}))

    out.print("\n[bold]Graph steps[/] [dim](from the stored patches)[/]")
    for s in graph_steps(graph_records(store.events(gid), gid)):
        nodes = ", ".join(n for n, _ in s.updates) or "(input)"
        out.print(f"  step {s.step}: {escape(nodes)}; state diff: "
                  f"{escape(', '.join(op['op'] + ' ' + op['path'] for op in s.diff))}")

    out.print("\n[bold]Replay from the store:[/] [dim]runlog_langgraph.stream(store, id, "
              "stream_mode=\"updates\")[/]")
    for update in stream(store, gid, stream_mode="updates"):
        out.print(f"  {escape(_describe(update))}")
    tokens = [c.content for c, _ in stream(store, gid, stream_mode="messages")
              if isinstance(c, AIMessageChunk) and c.content]
    out.print(f"[dim]messages mode, the answer's tokens:[/] {escape(repr(tokens))}")
    out.print(f"\n[bold]Try next:[/]\n  runlog show {gid} --db {store.location}")
    return gid
