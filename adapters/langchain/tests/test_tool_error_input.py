"""A tool at the root: the replayed tool events carry the inputs LangChain streamed.

``astream_events`` reports the value the root was called with on its first event, but
``on_tool_error`` carries the tool's own ``inputs`` (a ``ToolCall``'s args, a dict, or
``None`` for a string), which the recorder stores on the run's end (issue 16, item 2).
Compared with ``==`` item by item, live against replay, through the drop-in API and
the core view, on the error path and the success path.
"""

from __future__ import annotations

from typing import Any

import pytest
import runlog_langchain
from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from lc_diff_helpers import assert_item_equal, assert_same_errors, frozen_clock, replay, run_live

import runlog

pytestmark = pytest.mark.anyio


@tool
def broken(x: int) -> int:
    """Always fails."""
    raise ValueError(f"broken tool got {x}")


@tool
def add_one(x: int) -> int:
    """Add one."""
    return x + 1


@tool
def calls_a_chain(x: int) -> int:
    """Runs a child runnable, then fails."""
    RunnableLambda(lambda v: v + 1).with_config(run_name="child").invoke(x)
    raise RuntimeError("after the child")


def call(t: Any, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": t.name, "args": args, "id": "call_1", "type": "tool_call"}


TOOLS = {"broken": broken, "add_one": add_one, "calls_a_chain": calls_a_chain}
INPUTS: dict[str, Any] = {
    "tool_call": lambda t: call(t, {"x": 42}),
    "dict": lambda t: {"x": 42},
    "string": lambda t: "42",  # add_one fails on it too (str + int)
}


async def _live_and_replay(tool_name: str, kind: str, api: str, kwargs: dict[str, Any]
                           ) -> tuple[list[Any], list[Any], runlog.Store, str]:
    t = TOOLS[tool_name]
    store = runlog.open(":memory:")
    with frozen_clock() as clock:
        live, live_err, root = await run_live(t, INPUTS[kind](t), None, api, kwargs, store,
                                              clock)
    got, err = await replay(store, root, api, kwargs, live=live)
    assert len(got) == len(live)
    assert_same_errors(err, live_err)
    return live, got, store, root


@pytest.mark.parametrize("kind", list(INPUTS))
@pytest.mark.parametrize("tool_name", list(TOOLS))
async def test_root_tool_events_equal_live(tool_name: str, kind: str) -> None:
    live, _, store, root = await _live_and_replay(tool_name, kind, "events", {})
    try:
        core = list(store.replay(root, view="events"))
        assert len(core) == len(live)
        for i, (c, want) in enumerate(zip(core, live, strict=True)):
            assert_item_equal(c, want, i)
    finally:
        store.close()


async def test_tool_call_error_input_is_the_args() -> None:
    """The case the issue names, spelled out: the envelope on the first event, the args
    on the error."""
    live, got, store, _ = await _live_and_replay("broken", "tool_call", "events", {})
    store.close()
    assert [e["event"] for e in got] == ["on_tool_start", "on_tool_error"]
    assert got[0]["data"]["input"] == call(broken, {"x": 42})
    assert got[1]["data"]["input"] == {"x": 42}
    assert got[1]["data"]["tool_call_id"] == "call_1"
    assert live[1]["data"]["input"] == {"x": 42}


async def test_tool_call_success_replays_tool_message() -> None:
    live, got, store, _ = await _live_and_replay("add_one", "tool_call", "events", {})
    store.close()
    assert [e["event"] for e in got] == ["on_tool_start", "on_tool_end"]
    assert "input" not in got[1]["data"]  # the root's end drops it, as LangChain does
    assert isinstance(got[1]["data"]["output"], ToolMessage)
    assert got == live


@pytest.mark.parametrize(("kwargs", "error_inputs"), [
    ({"include_names": ["child"]}, []),
    ({"include_types": ["tool"]}, [{"x": 42}]),
    ({"exclude_names": ["child"]}, [{"x": 42}]),
])
async def test_filtered_tool_call_root_equal_live(kwargs: dict[str, Any],
                                                  error_inputs: list[Any]) -> None:
    """With the root filtered out, the child's first event carries the call value; with
    the root kept, its error still carries the args."""
    _, got, store, _ = await _live_and_replay("calls_a_chain", "tool_call", "events",
                                              kwargs)
    store.close()
    assert got[0]["data"]["input"] == call(calls_a_chain, {"x": 42})
    assert [e["data"]["input"] for e in got if e["event"] == "on_tool_error"] == error_inputs


@pytest.mark.parametrize("diff", [True, False])
@pytest.mark.parametrize("kind", list(INPUTS))
async def test_root_tool_log_equal_live(kind: str, diff: bool) -> None:
    _, _, store, _ = await _live_and_replay("broken", kind, "log", {"diff": diff})
    store.close()


async def test_recorded_invoke_of_tool_call_replays_args_on_error() -> None:
    """Recorded by ``record()`` around a plain ``invoke``: the same two events."""
    store = runlog.open(":memory:")
    try:
        with runlog_langchain.record(store) as rec, pytest.raises(ValueError):
            broken.invoke(call(broken, {"x": 42}))
        got, err = await replay(store, rec.root_ids[0], "events", {})
        assert isinstance(err, ValueError)
        assert [(e["event"], e["data"]["input"]) for e in got] == [
            ("on_tool_start", call(broken, {"x": 42})), ("on_tool_error", {"x": 42})]
    finally:
        store.close()
