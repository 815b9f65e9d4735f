"""The compact forms of the stored parts (issue 17, performance): a token's ``messages``
part is the model run's token event (no event of its own), a task/checkpoint part carries its
``debug`` twin, a task's ``triggers`` tuple is stored as a list; the replay still
gives LangGraph's own items, ``==``."""

from __future__ import annotations

from collections import Counter
from typing import Any, TypedDict

import pytest
import runlog_langgraph as rlg
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.graph import START, MessagesState, StateGraph

import runlog
from runlog.reducers.graph import graph_steps


def _talker(words: int) -> Any:
    model = GenericFakeChatModel(messages=iter([AIMessage(" ".join(["tok"] * words))]))

    def talk(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    return StateGraph(MessagesState).add_node("talk", talk).add_edge(START, "talk").compile()


class Count(TypedDict):
    n: int


def _counter(steps: int) -> Any:
    g = StateGraph(Count)
    prev = START
    for i in range(steps):
        g.add_node(f"s{i}", lambda s: {"n": s["n"] + 1})
        g.add_edge(prev, f"s{i}")
        prev = f"s{i}"
    return g.compile()


def _stored(store: runlog.Store, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for e in store.events(run_id=run_id):
        if e.channel == "custom" and str(e.data["name"]).startswith("langgraph:"):
            out.append((e.data["name"].split(":", 1)[1], e.data["data"]))
    return out


def test_token_parts_are_their_token_events(lg_store: runlog.Store) -> None:
    x = {"messages": [("user", "hi")]}
    live = list(_talker(100).stream(x, stream_mode=list(rlg.ALL_MODES), subgraphs=True))
    with rlg.record(lg_store) as rec:
        out = list(_talker(100).stream(x, stream_mode="messages"))
    lg_store.flush()
    stored = _stored(lg_store, rec.graph_ids[0])
    forms = Counter(tuple(sorted(d)) for kind, d in stored if kind == "messages")
    # the first token carries the metadata; the later ones are their token events
    # alone, placed by the next stored event ("pre"), at least every 64 tokens
    assert forms[("data", "ns")] == 1
    assert set(forms) <= {("data", "ns"), ("ns", "pre")}
    assert 1 <= forms[("ns", "pre")] <= len(out) // 64 + 1
    placed = [run for _kind, d in stored for run in d.get("pre", ())]
    assert sum(count for _ns, _run, _first, count in placed) == len(out) - 1
    assert placed[0][2] == 1  # token 0 came with the metadata
    assert list(rlg.stream(lg_store, rec.graph_ids[0])) == out
    replayed = list(rlg.stream(lg_store, rec.graph_ids[0], stream_mode=list(rlg.ALL_MODES),
                               subgraphs=True))
    assert [(p[0], p[1]) for p in replayed] == [(p[0], p[1]) for p in live]
    got = [p[2][0] for p in replayed if p[1] == "messages"]
    assert [m.content for m in got] == [p[2][0].content for p in live if p[1] == "messages"]
    assert got == out_messages(out)


def out_messages(out: list[Any]) -> list[Any]:
    return [m for m, _meta in out]


def test_debug_parts_travel_with_their_task_and_triggers_stay_tuples(
        lg_store: runlog.Store) -> None:
    modes = list(rlg.ALL_MODES)
    with rlg.record(lg_store) as rec:
        out = list(_counter(5).stream({"n": 0}, stream_mode=modes, subgraphs=True))
    lg_store.flush()
    stored = _stored(lg_store, rec.graph_ids[0])
    kinds = Counter(kind for kind, _d in stored)
    n_debug = sum(1 for _ns, mode, _c in out if mode == "debug")
    assert n_debug > 0
    # no thread interleaves here: every debug part is inside its task's event
    assert kinds["debug"] == 0
    assert sum(1 for kind, d in stored if "debug" in d) == n_debug
    assert all(d.get("tuples") == ["triggers"] for kind, d in stored
               if kind == "tasks" and "triggers" in d["data"])
    replayed = list(rlg.stream(lg_store, rec.graph_ids[0]))
    assert replayed == out
    triggers = [c["triggers"] for _ns, mode, c in replayed
                if mode == "tasks" and "triggers" in c]
    assert triggers
    assert all(type(t) is tuple for t in triggers)
    # the debug payload is the task's own chunk, as LangGraph streams it
    for i, (_ns, mode, c) in enumerate(replayed):
        if mode == "debug" and c["type"] != "checkpoint":
            assert c["payload"] is replayed[i - 1][2]
    # the CLI's and web's step view reads the same steps as from separate debug parts
    separate: list[tuple[str, Any]] = []
    for kind, d in stored:
        separate.append((kind, {k: v for k, v in d.items() if k != "debug"}))
        if "debug" in d:
            separate.append(("debug", {"ns": d["ns"], "data": d["debug"],
                                       "payload_of": kind}))
    steps = graph_steps(stored)
    assert steps == graph_steps(separate)
    assert [s.step for s in steps] == [0, 1, 2, 3, 4, 5]
    assert [s.updates for s in steps[1:]] == [[(f"s{i}", {"n": i + 1})] for i in range(5)]


def test_a_token_the_store_does_not_hold_is_a_clear_error() -> None:
    """A placing event refers to the model run's token events by position; if one of
    them was never stored (refused by the writer after it was queued), the replay says
    so instead of yielding a later token in its place or raising IndexError."""
    from types import SimpleNamespace

    from runlog_langgraph.replay import _Folder

    from runlog.errors import CorruptStoreError

    tokens = [SimpleNamespace(seq=i + 1, kind="stream", channel="token",
                              data={"token": t, "chunk": t}) for i, t in enumerate("ab")]

    class TwoTokens:
        def events(self, run_id: str, after: int) -> list[SimpleNamespace]:
            return [e for e in tokens if e.seq > after]

    folder = _Folder(TwoTokens())  # type: ignore[arg-type]
    assert folder.token("model-run", 1) == "b"
    with pytest.raises(CorruptStoreError, match="token 2 of model run model-run"):
        folder.token("model-run", 2)
