"""LangGraph adapter benchmark (issue 17): recording overhead per step and per token.

Two graphs, each consumed three ways in the same run, alternating, median of repeats:

* steps:  a chain of S plain nodes (no model): the cost per superstep;
* tokens: one node whose ``GenericFakeChatModel`` streams N tokens: the cost per token.

Variants, per step (S) or per token (N):

* plain:     ``graph.stream(x, stream_mode="updates")``, no recorder;
* langgraph: ``graph.stream(x, stream_mode=[every mode], subgraphs=True)`` kept in
             memory: LangGraph's own streaming of everything, the physical reference;
* runlog:    ``graph.stream(x, stream_mode="updates")`` inside
             ``runlog_langgraph.record(store)``: every mode persisted to SQLite (the
             node runs and tokens through runlog_langchain too), timed up to the
             final flush, so every event is committed when the clock stops.

Printed, for wall and CPU time, as microseconds per unit:

* ``LG`` = langgraph - plain: LangGraph's own cost of streaming every mode;
* ``ours`` = runlog - plain: the cost of recording (it asks LangGraph for every mode
  itself, so ``ours`` contains ``LG``);
* ``total ratio`` = ours / LG;
* ``overhead ratio`` = (ours - LG) / LG = (runlog - langgraph) / LG: what persisting
  adds on top of LangGraph's own streaming, relative to it. The issue's goal
  ("<= 0.5x of LangGraph's own per-token streaming cost while persisting") is
  ``overhead ratio <= 0.5``.

Run: ``python -m benchmarks.bench_langgraph`` (``--quick``: smaller sizes;
``--breakdown``: also the cost of each stage of the recording).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict

import runlog_langgraph as rlg
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.graph import START, MessagesState, StateGraph
from runlog_langgraph.recorder import GraphRecorder, GraphStream

import runlog


class Count(TypedDict):
    n: int


def steps_graph(steps: int) -> Any:
    g = StateGraph(Count)
    prev = START
    for i in range(steps):
        g.add_node(f"s{i}", lambda s: {"n": s["n"] + 1})
        g.add_edge(prev, f"s{i}")
        prev = f"s{i}"
    return g.compile()


def tokens_graph(tokens: int) -> Any:
    words = (tokens + 1) // 2  # the fake model streams words and spaces as chunks
    model = GenericFakeChatModel(messages=iter([AIMessage(" ".join(["tok"] * words))]))

    def talk(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    return StateGraph(MessagesState).add_node("talk", talk).add_edge(START, "talk").compile()


def _plain(g: Any, x: Any, store: runlog.Store) -> None:
    for _ in g.stream(x, stream_mode="updates"):
        pass


def _langgraph(g: Any, x: Any, store: runlog.Store) -> None:
    for _ in g.stream(x, stream_mode=list(rlg.ALL_MODES), subgraphs=True):
        pass


def _runlog(g: Any, x: Any, store: runlog.Store) -> None:
    with rlg.record(store) as rec:
        for _ in g.stream(x, stream_mode="updates"):
            pass
    store.flush()
    if rec.failures:
        raise RuntimeError(f"recording failed: {rec.last_error}")


VARIANTS: dict[str, Callable[[Any, Any, runlog.Store], None]] = {
    "plain": _plain, "langgraph": _langgraph, "runlog": _runlog}


def _nothing(*args: Any, **kwargs: Any) -> Any:
    return True


@contextmanager
def _without(**methods: Any) -> Iterator[None]:
    """Replace recorder methods by no-ops for one run (``--breakdown``)."""
    owners = {"part": GraphStream, "emit": GraphRecorder, "on_llm_new_token": GraphRecorder}
    saved = {name: owners[name].__dict__.get(name) for name in methods}
    for name, fn in methods.items():
        setattr(owners[name], name, fn)
    try:
        yield
    finally:
        for name, fn in saved.items():
            if fn is None:  # inherited (runlog_langchain.Recorder's)
                delattr(owners[name], name)
            else:
                setattr(owners[name], name, fn)


def _ablated(**methods: Any) -> Callable[[Any, Any, runlog.Store], None]:
    def run(g: Any, x: Any, store: runlog.Store) -> None:
        with _without(**methods):
            _runlog(g, x, store)
    return run


BREAKDOWN: dict[str, Callable[[Any, Any, runlog.Store], None]] = {
    "runlog: node runs only (no parts, no token events)": _ablated(
        part=_nothing, on_llm_new_token=_nothing),
    "runlog: + token events": _ablated(part=_nothing),
    "runlog: + parts built, not stored": _ablated(emit=_nothing),
}
"""Cumulative stages of the recording, timed with the variants: node runs (what
runlog_langchain stores of each node, plus LangChain's callback dispatch to the
recorder), then the model's token events, then the stream parts built (patches,
references) but not stored; ``runlog`` itself adds storing them."""


def measure(factory: Callable[[], Any], x: Any, units: int, repeat: int,
            store: runlog.Store, breakdown: bool = False) -> dict[str, Any]:
    variants = {**VARIANTS, **(BREAKDOWN if breakdown else {})}
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    for _ in range(repeat):
        for name, fn in variants.items():
            g = factory()
            gc.collect()
            t0, c0 = time.perf_counter(), time.process_time()
            fn(g, x, store)
            times[name].append((time.perf_counter() - t0, time.process_time() - c0))
    out: dict[str, Any] = {"units": units}
    for i, clock in enumerate(("wall", "cpu")):
        med = {k: statistics.median(t[i] for t in v) for k, v in times.items()}
        per = {k: v / units * 1e6 for k, v in med.items()}
        lg = per["langgraph"] - per["plain"]
        ours = per["runlog"] - per["plain"]
        out[clock] = {"plain_us": per["plain"], "langgraph_us": per["langgraph"],
                      "runlog_us": per["runlog"], "lg_cost_us": lg, "ours_us": ours,
                      "total_ratio": ours / lg if lg > 0 else float("nan"),
                      "overhead_ratio": (ours - lg) / lg if lg > 0 else float("nan"),
                      "breakdown_us": {k: per[k] for k in BREAKDOWN if k in per}}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time the recording's stages (see BREAKDOWN)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    steps, tokens, repeat = (50, 400, 3) if args.quick else (200, 2000, 5)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        store = runlog.open(Path(d) / "bench.db")
        try:
            _runlog(steps_graph(3), {"n": 0}, store)  # warm up imports and codecs
            results["steps"] = measure(lambda: steps_graph(steps), {"n": 0}, steps,
                                       repeat, store, args.breakdown)
            results["tokens"] = measure(lambda: tokens_graph(tokens),
                                        {"messages": [("user", "hi")]}, tokens, repeat,
                                        store, args.breakdown)
        finally:
            store.close()
    for what, r in results.items():
        for clock in ("wall", "cpu"):
            c = r[clock]
            print(f"per {what[:-1]} ({r['units']} {what}, {clock}, us): plain "
                  f"{c['plain_us']:.1f}, langgraph {c['langgraph_us']:.1f}, runlog "
                  f"{c['runlog_us']:.1f}; LG = langgraph-plain {c['lg_cost_us']:.1f}, "
                  f"ours = runlog-plain {c['ours_us']:.1f}; total ratio ours/LG "
                  f"{c['total_ratio']:.2f}x, overhead ratio (ours-LG)/LG "
                  f"{c['overhead_ratio']:.2f}x (goal <= 0.5x)", flush=True)
            for stage, us in c["breakdown_us"].items():
                print(f"    {stage}: {us:.1f} us", flush=True)
    return results


if __name__ == "__main__":
    main()
