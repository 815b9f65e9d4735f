"""A separate process for test_lg_live: records a graph into a store and writes what
the application's own ``stream`` yielded, one codec line per item, to a file. Node
``a`` waits for the file ``<out>.go`` mid-way, so the reader sees the run open."""

from __future__ import annotations

import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import runlog_langgraph as rlg
from langgraph.config import get_stream_writer
from langgraph.graph import START, StateGraph
from lg_scenarios import Log

import runlog
from runlog import codec


def slow(name: str, gate: Path | None = None) -> Any:
    def node(state: Log) -> dict[str, Any]:
        w = get_stream_writer()
        for i in range(3):
            w({"node": name, "i": i})
            if gate is not None and i == 1:  # hold the run open until the reader saw it
                deadline = time.monotonic() + 60
                while not gate.exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
        return {"log": [name]}
    return node


def main(db: str, run_id: str, out: str, v3: bool) -> None:
    graph = (StateGraph(Log).add_node("a", slow("a", Path(out + ".go")))
             .add_node("b", slow("b"))
             .add_edge(START, "a").add_edge("a", "b").compile())
    cfg = {"run_id": uuid.UUID(run_id)}
    with runlog.open(db) as store, rlg.record(store), open(out, "wb") as f:
        if v3:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                items: Any = graph.stream_events({"log": []}, cfg, version="v3")
        else:
            items = graph.stream({"log": []}, cfg, stream_mode=["custom", "values"])
        for item in items:
            f.write(codec.encode(item) + b"\n")
            f.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "v3")
