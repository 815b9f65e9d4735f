"""The values deltas: folding ``diff(old, new)`` onto ``old`` gives ``new`` (property),
and a growing conversation stores what changed, not its whole state, per step."""

from __future__ import annotations

from typing import Any

import runlog_langgraph as rlg
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import START, MessagesState, StateGraph
from runlog_langgraph.diff import diff

import runlog
from runlog import codec
from runlog.reducers.patch import apply_ops, structural_copy

keys = st.text(alphabet="ab/~_-0", max_size=3)
leaves = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) \
    | st.text(max_size=3) | st.builds(HumanMessage, content=st.text(max_size=3))
values = st.recursive(leaves, lambda kids: st.lists(kids, max_size=4)
                      | st.dictionaries(keys, kids, max_size=4), max_leaves=20)


@settings(max_examples=300)
@given(values, values)
def test_diff_then_apply_gives_the_new_value(old: Any, new: Any) -> None:
    ops = diff(old, new)
    before = codec.encode(new)
    got = apply_ops(structural_copy(old), ops)
    assert codec.encode(got) == codec.encode(new)  # exact: 1 vs True vs 1.0 kept apart
    assert codec.encode(new) == before  # diff never changes its inputs
    if codec.encode(old) == codec.encode(new):
        assert ops == []


@given(values)
def test_a_grown_list_costs_one_add_per_item(base: Any) -> None:
    old = {"messages": [base]}
    new = {"messages": [base, "x", "y"]}
    assert diff(old, new) == [{"op": "add", "path": "/messages/-", "value": "x"},
                              {"op": "add", "path": "/messages/-", "value": "y"}]


def _conversation(steps: int) -> Any:
    def talk(state: MessagesState) -> dict[str, Any]:
        n = len(state["messages"])
        return {"messages": [AIMessage(f"reply number {n} " + "words " * 8, id=f"m{n}")]}

    def route(state: MessagesState) -> str:
        return "talk" if len(state["messages"]) < steps else "__end__"

    return (StateGraph(MessagesState).add_node("talk", talk).add_edge(START, "talk")
            .add_conditional_edges("talk", route).compile())


def values_bytes(store: runlog.Store, run_id: str) -> tuple[int, int]:
    """(bytes of the stored ``values`` payloads, bytes of the whole stored events)."""
    payload = whole = 0
    for e in store.events(run_id=run_id):
        if e.kind == "stream" and e.data.get("name") == "langgraph:values":
            payload += len(codec.encode(e.data["data"]))
            whole += len(e.raw)
    return payload, whole


def test_a_200_step_conversation_stores_its_values_in_under_twice_its_final_state(
        lg_store: runlog.Store) -> None:
    graph = _conversation(200)
    with rlg.record(lg_store) as rec:
        final = graph.invoke({"messages": [HumanMessage("hello", id="h0")]},
                             {"recursion_limit": 500})
    assert len(final["messages"]) == 200
    (rid,) = rec.graph_ids
    payload, _whole = values_bytes(lg_store, rid)
    final_bytes = len(codec.encode(final))
    assert payload <= 2 * final_bytes, (payload, final_bytes)
    assert rlg.state(lg_store, rid) == final
