"""The graphs of the differential suite: each builds a fresh graph (fresh fake models,
fresh checkpointer) and runs it, so a scenario can be run live as often as needed.

No network: chat models are langchain-core's ``GenericFakeChatModel`` and the demo's
subclass that also streams tool calls (``FakeToolCallingModel``).
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command, Send, interrupt
from runlog_langgraph.demo import FakeToolCallingModel

FakeToolModel = FakeToolCallingModel  # streams its tool calls; see runlog_langgraph.demo


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def mul(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def agent_model() -> FakeToolModel:
    return FakeToolModel(messages=iter([
        AIMessage(content="", tool_calls=[
            {"name": "add", "args": {"a": 1, "b": 2}, "id": "call_add"},
            {"name": "mul", "args": {"a": 3, "b": 4}, "id": "call_mul"}]),
        AIMessage(content="1 + 2 is 3 and 3 * 4 is 12")]))


class Log(TypedDict):
    log: Annotated[list[str], operator.add]


def _step(name: str) -> Callable[[Log], dict[str, Any]]:
    def node(state: Log) -> dict[str, Any]:
        return {"log": [name]}
    return node


@dataclass
class Scenario:
    """``calls``: the inputs of the successive calls on one thread (a resume is a
    second call); ``parallel``: branches of one step run in threads, so their order
    may differ between two live runs (the replay of one run keeps its order)."""

    name: str
    build: Callable[[], Any]
    calls: list[Any]
    checkpointer: bool = False
    parallel: bool = False
    raises: type[BaseException] | None = None
    wrap: Callable[[Any], Any] | None = None  # a LangChain chain around the graph
    config: dict[str, Any] = field(default_factory=dict)


def two_node() -> Any:
    return (StateGraph(Log).add_node("a", _step("a")).add_node("b", _step("b"))
            .add_edge(START, "a").add_edge("a", "b").add_edge("b", END).compile())


def two_node_checkpointed() -> Any:
    return (StateGraph(Log).add_node("a", _step("a")).add_node("b", _step("b"))
            .add_edge(START, "a").add_edge("a", "b").compile(checkpointer=InMemorySaver()))


def chat() -> Any:
    model = GenericFakeChatModel(messages=iter(["Hello there, how are you?",
                                                "Fine, thanks for asking."]))

    def talk(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def again(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    return (StateGraph(MessagesState).add_node("talk", talk).add_node("again", again)
            .add_edge(START, "talk").add_edge("talk", "again").compile())


def react_prebuilt() -> Any:
    import warnings

    from langgraph.prebuilt import create_react_agent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # moved to langchain.agents; still shipped
        return create_react_agent(agent_model(), [add, mul])


def react_create_agent() -> Any:
    return langchain_create_agent()(agent_model(), [add, mul])


def langchain_create_agent() -> Any:
    """``langchain.agents.create_agent``, or skip the test when ``langchain`` is not
    installed. It is not in the dev extra: an installed ``langchain`` adds
    ``lc_versions["langchain"]`` to every model's metadata, which LangChain's own
    snapshot tests (``scripts/langchain_own_tests.py``) reject; install ``langchain``
    1.4.7 (the newest that runs with langchain-core 1.7.2) to run these. ``.ci/run``
    runs them in a venv with ``langchain``, where RUNLOG_REQUIRE_LANGCHAIN=1 makes a
    missing ``langchain`` fail instead of skip."""
    if os.environ.get("RUNLOG_REQUIRE_LANGCHAIN") == "1":
        import langchain.agents
        return langchain.agents.create_agent
    agents = pytest.importorskip("langchain.agents", reason=(
        "langchain is not installed (pip install langchain==1.4.7 to run the "
        "create_agent tests)"))
    return agents.create_agent


def parallel() -> Any:
    return (StateGraph(Log).add_node("a", _step("a")).add_node("b", _step("b"))
            .add_node("c", _step("c")).add_node("join", _step("join"))
            .add_edge(START, "a").add_edge(START, "b").add_edge(START, "c")
            .add_edge(["a", "b", "c"], "join").compile())


class Fan(TypedDict):
    items: list[int]
    results: Annotated[list[int], operator.add]


def send_fanout() -> Any:
    def work(arg: dict[str, int]) -> dict[str, Any]:
        return {"results": [arg["n"] * 10]}

    def fan(state: Fan) -> list[Send]:
        return [Send("work", {"n": n}) for n in state["items"]]

    return (StateGraph(Fan).add_node("prep", lambda s: {"results": []})
            .add_node("work", work).add_edge(START, "prep")
            .add_conditional_edges("prep", fan, ["work"]).compile())


def _child() -> Any:
    model = GenericFakeChatModel(messages=iter(["child speaks softly"]))

    def inner(state: MessagesState) -> dict[str, Any]:
        get_stream_writer()({"child": "working"})
        return {"messages": [model.invoke(state["messages"])]}

    return (StateGraph(MessagesState).add_node("inner", inner).add_edge(START, "inner")
            .add_node("inner2", lambda s: {"messages": [AIMessage("done", id="m-done")]})
            .add_edge("inner", "inner2").compile())


def subgraph() -> Any:
    return (StateGraph(MessagesState).add_node("child", _child())
            .add_node("after", lambda s: {"messages": [AIMessage("after", id="m-after")]})
            .add_edge(START, "child").add_edge("child", "after").compile())


def subgraph_parallel() -> Any:
    return (StateGraph(MessagesState).add_node("child", _child())
            .add_node("side", lambda s: {"messages": [AIMessage("side", id="m-side")]})
            .add_edge(START, "child").add_edge(START, "side").compile())


def interrupt_resume() -> Any:
    def ask(state: Log) -> dict[str, Any]:
        answer = interrupt({"question": "proceed?"})
        return {"log": [f"answer:{answer}"]}

    return (StateGraph(Log).add_node("a", _step("a")).add_node("ask", ask)
            .add_node("b", _step("b")).add_edge(START, "a").add_edge("a", "ask")
            .add_edge("ask", "b").compile(checkpointer=InMemorySaver()))


def command_goto() -> Any:
    def route(state: Log) -> Command[Any]:
        return Command(goto="c", update={"log": ["routed"]})

    return (StateGraph(Log).add_node("route", route, destinations=("b", "c"))
            .add_node("b", _step("b")).add_node("c", _step("c"))
            .add_edge(START, "route").compile())


def custom_writer() -> Any:
    def write(state: Log) -> dict[str, Any]:
        w = get_stream_writer()
        for i in range(3):
            w({"progress": i})
        w("a plain string")
        return {"log": ["wrote"]}

    return (StateGraph(Log).add_node("write", write).add_node("b", _step("b"))
            .add_edge(START, "write").add_edge("write", "b").compile())


class Boom(ValueError):
    """The error a node raises mid-stream."""


def node_raises() -> Any:
    def bad(state: Log) -> dict[str, Any]:
        get_stream_writer()({"before": "the error"})
        raise Boom("the node failed", 42)

    return (StateGraph(Log).add_node("a", _step("a")).add_node("bad", bad)
            .add_edge(START, "a").add_edge("a", "bad").compile())


def in_chain(graph: Any) -> Any:
    return (RunnableLambda(lambda q: {"messages": [("user", q)]}) | graph
            | RunnableLambda(lambda s: s["messages"][-1].content))


LOG_IN = {"log": []}
MSG_IN = {"messages": [("user", "hi")]}

SCENARIOS: list[Scenario] = [
    Scenario("two_node", two_node, [LOG_IN]),
    Scenario("checkpointer_present", two_node_checkpointed, [LOG_IN], checkpointer=True),
    Scenario("add_messages", chat, [MSG_IN]),
    # the two tool calls run as parallel tasks
    Scenario("react_prebuilt", react_prebuilt, [{"messages": [("user", "1+2, 3*4?")]}],
             parallel=True),
    Scenario("react_create_agent", react_create_agent,
             [{"messages": [("user", "1+2, 3*4?")]}], parallel=True),
    Scenario("parallel_nodes", parallel, [LOG_IN], parallel=True),
    Scenario("send_fanout", send_fanout, [{"items": [1, 2, 3], "results": []}],
             parallel=True),
    Scenario("subgraph", subgraph, [MSG_IN]),
    Scenario("subgraph_parallel", subgraph_parallel, [MSG_IN], parallel=True),
    Scenario("interrupt_resume", interrupt_resume, [LOG_IN, Command(resume="yes")],
             checkpointer=True),
    Scenario("command_goto", command_goto, [LOG_IN]),
    Scenario("custom_writer", custom_writer, [LOG_IN]),
    Scenario("node_raises", node_raises, [LOG_IN], raises=Boom),
]
