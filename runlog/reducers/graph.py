"""Read the LangGraph stream stored on a graph's run, with no LangGraph code.

``runlog_langgraph`` stores a graph's stream as custom-channel stream events named
``langgraph:<kind>`` on the graph's run (docs/langgraph.md has the mapping). This
module reads them generically, for the CLI (``runlog show``), the web viewer's graph
steps and its v3 SSE endpoint, so that runlog itself never imports an adapter:

* :func:`graph_records`: the ``(kind, data)`` records of one run, in order;
* :func:`v3_event`: one stored v3 record back to the protocol event LangGraph emitted
  (``values`` events are stored as JSON Patches from the previous state of their
  namespace; the fold keeps that state);
* :func:`graph_steps`: the root graph's steps: step number, the nodes that ran and
  what each returned, the state diff (the stored patch), interrupts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from runlog.events import Event
from runlog.reducers.patch import apply_ops, structural_copy

__all__ = ["PREFIX", "GraphStep", "graph_records", "graph_steps", "v3_channel", "v3_event",
           "v3_matches"]

PREFIX = "langgraph:"
"""The name prefix of the custom events a graph's stream is stored as."""


def graph_records(events: Iterable[Event], run_id: str) -> Iterator[tuple[str, Any]]:
    """``(kind, data)`` of every ``langgraph:<kind>`` event of run ``run_id``."""
    for e in events:
        if e.run_id != run_id or e.kind != "stream" or e.channel != "custom":
            continue
        payload = e.data
        name = payload.get("name") if isinstance(payload, dict) else None
        if isinstance(name, str) and name.startswith(PREFIX):
            yield name[len(PREFIX):], payload.get("data")


def v3_event(stored: Any, fold: dict[tuple[Any, ...], Any]) -> dict[str, Any] | None:
    """The v3 protocol event a stored ``langgraph:v3`` record holds (``None`` if it is
    malformed), folding ``values`` patches into ``fold`` (one dict per replay)."""
    if not isinstance(stored, dict):
        return None
    ev = stored.get("event")
    if not isinstance(ev, dict):
        return None
    params = ev.get("params")
    if ev.get("method") != "values" or type(params) is not dict:
        return ev
    key = tuple(params.get("namespace") or ())
    if "patch" in stored:
        if key not in fold:
            return None
        value = apply_ops(fold[key], stored["patch"])
        fold[key] = value
        params["data"] = structural_copy(value)
    elif "data" in params:
        fold[key] = structural_copy(params["data"])
    return ev


def v3_channel(event: dict[str, Any]) -> str:
    """The protocol channel of an event: its method (``input.*`` → ``input``)."""
    method = str(event.get("method", ""))
    return "input" if method.startswith("input.") else method


def v3_matches(event: dict[str, Any], channels: frozenset[str] | None,
               namespace: list[str] | None) -> bool:
    """Whether a protocol event passes a subscription's channels and namespace prefix."""
    params = event.get("params") if isinstance(event.get("params"), dict) else {}
    assert isinstance(params, dict)
    if channels is not None:
        ch = v3_channel(event)
        if ch not in channels:
            name = params.get("name") if ch == "custom" else None
            if not (isinstance(name, str) and f"custom:{name}" in channels):
                return False
    if namespace is not None:
        ns = params.get("namespace")
        ns = list(ns) if isinstance(ns, list | tuple) else []
        if ns[:len(namespace)] != namespace:
            return False
    return True


@dataclass
class GraphStep:
    """One superstep of the root graph, as stored."""

    step: int
    updates: list[tuple[str, Any]] = field(default_factory=list)
    """``(node, what it returned)`` for each node that ran, in stored order."""
    diff: list[dict[str, Any]] = field(default_factory=list)
    """The JSON Patch from the previous step's state (all of it for the first)."""
    interrupts: list[Any] = field(default_factory=list)


def graph_steps(records: Iterable[tuple[str, Any]]) -> list[GraphStep]:
    """The root graph's steps from :func:`graph_records` of a stream-mode recording.

    The step number is LangGraph's (from the ``debug`` task parts); ``values`` after
    a step give its state diff, ``updates`` its nodes, ``__interrupt__`` its interrupts.
    """
    steps: dict[int, GraphStep] = {}
    current = 0

    def at(n: int) -> GraphStep:
        if n not in steps:
            steps[n] = GraphStep(n)
        return steps[n]

    for kind, data in records:
        if not isinstance(data, dict) or data.get("ns"):
            continue  # subgraph parts: their parent's step shows what they returned
        chunk = data.get("data")
        if kind == "tasks" and isinstance(data.get("debug"), dict):
            chunk, kind = data["debug"], "debug"  # the debug part stored with its task
        if kind == "debug" and isinstance(chunk, dict) and chunk.get("type") in (
                "task", "task_result") and isinstance(chunk.get("step"), int):
            current = chunk["step"]
        elif kind == "updates" and isinstance(chunk, dict):
            for node, update in chunk.items():
                if node == "__interrupt__":
                    at(current).interrupts.extend(
                        update if isinstance(update, list | tuple) else [update])
                else:
                    at(current).updates.append((str(node), update))
        elif kind == "values":
            if "patch" in data and isinstance(data["patch"], list):
                at(current).diff.extend(data["patch"])
            elif "data" in data:
                at(current).diff.append({"op": "replace", "path": "", "value": chunk})
    return [steps[k] for k in sorted(steps)]
