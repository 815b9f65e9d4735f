"""``record(store)``: record every graph (and every Runnable) invoked inside a block.

The block is :func:`runlog_langchain.record` with a :class:`GraphRecorder`: LangChain's
configure hook attaches it to every run started in the context, and the ``Pregel``
wrappers (:mod:`runlog_langgraph.hooks`) find it there and store each outermost
graph's stream on the graph's run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import runlog_langchain

from runlog import Store
from runlog.events import now_micros
from runlog_langgraph.recorder import GraphRecorder

__all__ = ["arecord", "record"]


@contextmanager
def record(store: Store | GraphRecorder, *,
           clock: Callable[[], int] = now_micros) -> Iterator[GraphRecorder]:
    """Record every LangGraph graph and LangChain run started inside the block.

    ``with runlog_langgraph.record(store) as rec: graph.invoke(x)``; the graph's run
    ids are in ``rec.graph_ids``. The application's own output is unchanged, whatever
    ``stream_mode``/``subgraphs`` it asks for. On exit the store is flushed (failures
    are logged and counted in ``rec.failures``, never raised).
    """
    rec = store if isinstance(store, GraphRecorder) else GraphRecorder(store, clock=clock)
    with runlog_langchain.record(rec):
        yield rec


@asynccontextmanager
async def arecord(store: Store | GraphRecorder, *,
                  clock: Callable[[], int] = now_micros) -> AsyncIterator[GraphRecorder]:
    """``async with runlog_langgraph.arecord(store) as rec: await graph.ainvoke(x)``."""
    rec = store if isinstance(store, GraphRecorder) else GraphRecorder(store, clock=clock)
    async with runlog_langchain.arecord(rec):
        yield rec
