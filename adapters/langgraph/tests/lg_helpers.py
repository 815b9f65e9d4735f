"""Run a scenario live with the recorder attached, and normalise volatile values."""

from __future__ import annotations

from typing import Any

import runlog_langgraph as rlg
from langchain_core.messages import BaseMessage
from langgraph.types import Interrupt
from lg_scenarios import Scenario

import runlog


def config_for(sc: Scenario, thread: str = "t") -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}} if sc.checkpointer else {}


def run_calls(sc: Scenario, graph: Any, stream_mode: Any, subgraphs: bool,
              thread: str = "t", **kw: Any) -> list[tuple[list[Any], BaseException | None]]:
    """Every call of the scenario on one thread: its items, and the error it raised
    (``kw``: more arguments of ``stream``, e.g. ``version``)."""
    out: list[tuple[list[Any], BaseException | None]] = []
    cfg = config_for(sc, thread)
    for inp in sc.calls:
        items: list[Any] = []
        try:
            for item in graph.stream(inp, cfg, stream_mode=stream_mode, subgraphs=subgraphs,
                                     **kw):
                items.append(item)
        except Exception as e:
            out.append((items, e))
        else:
            out.append((items, None))
    return out


def record_calls(store: runlog.Store, sc: Scenario, stream_mode: Any, subgraphs: bool
                 ) -> tuple[rlg.GraphRecorder, list[tuple[list[Any], BaseException | None]]]:
    graph = sc.build()
    with rlg.record(store) as rec:
        out = run_calls(sc, graph, stream_mode, subgraphs)
    assert rec.failures == 0, rec.last_error
    assert len(rec.graph_ids) == len(sc.calls)
    return rec, out


def replay_call(store: runlog.Store, run_id: str, **kw: Any
                ) -> tuple[list[Any], BaseException | None]:
    items: list[Any] = []
    try:
        for item in rlg.stream(store, run_id, **kw):
            items.append(item)
    except Exception as e:
        return items, e
    return items, None


async def areplay_call(store: runlog.Store, run_id: str, **kw: Any
                       ) -> tuple[list[Any], BaseException | None]:
    """:func:`replay_call` through ``runlog_langgraph.astream``."""
    items: list[Any] = []
    try:
        async for item in rlg.astream(store, run_id, **kw):
            items.append(item)
    except Exception as e:
        return items, e
    return items, None


def assert_resumes(store: runlog.Store, run_id: str, expected: list[Any]) -> None:
    """Resuming ``stream_events`` after any event gives exactly the rest: read three
    events at a time, each time from the last one's seq, nothing skipped or repeated."""
    seen: list[Any] = []
    cursor = 0
    while True:
        batch = list(rlg.stream_events(store, run_id, since=cursor))[:3]
        if not batch:
            break
        seen.extend(batch)
        cursor = batch[-1]["seq"]
    assert seen == expected


def same(a: Any, b: Any) -> bool:
    """``a == b``, except that exceptions (which Python compares by identity) are the
    same when they are of the same class with the same ``args``."""
    if isinstance(a, BaseException) or isinstance(b, BaseException):
        return type(a) is type(b) and a.args == b.args
    if type(a) is dict and type(b) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if type(a) in (list, tuple) and type(b) is type(a):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def norm(value: Any) -> Any:
    """``value`` with what differs between two live runs of the same graph blanked out:
    message ids (random per model run), timestamps, checkpoint and task ids."""
    if isinstance(value, BaseMessage):
        return value.model_copy(update={"id": None})
    if isinstance(value, Interrupt):
        return Interrupt(norm(value.value), "*")
    if isinstance(value, dict):
        return {k: "*" if k in _VOLATILE else norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [norm(v) for v in value]
    if isinstance(value, tuple):
        return tuple(norm(v) for v in value)
    if isinstance(value, str) and ":" in value and len(value) > 30:
        return value.split(":")[0]  # a namespace "node:<task id>"
    return value


_VOLATILE = frozenset({"id", "timestamp", "checkpoint_id", "checkpoint_ns", "config",
                       "parent_config", "langgraph_checkpoint_ns", "langgraph_path",
                       "run_id", "tool_call_id"})
