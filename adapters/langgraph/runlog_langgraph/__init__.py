"""runlog-langgraph: record LangGraph graphs into runlog, replay their streams from it.

``with runlog_langgraph.record(store):`` records every compiled graph invoked inside
(``invoke``/``ainvoke``/``stream``/``astream``/``batch``, ``stream_events(version="v3")``)
with every stream mode and subgraph namespace, whatever the application asked for, and
without changing what it receives. ``stream``/``astream`` replay what LangGraph's own
methods yielded (v1 tuples or v2 ``StreamPart`` dicts), ``stream_events`` the v3
protocol events (recorded from a v3 call, or derived from a plain call's parts),
``state`` a step's state.
See docs/langgraph.md.
"""

from __future__ import annotations

from runlog_langgraph.codec import register as _register_codec

_register_codec()

from runlog_langgraph.context import arecord, record  # noqa: E402
from runlog_langgraph.fixtures import replay_agent  # noqa: E402
from runlog_langgraph.hooks import ALL_MODES, install  # noqa: E402
from runlog_langgraph.recorder import GraphRecorder  # noqa: E402
from runlog_langgraph.replay import (  # noqa: E402
    NotAGraphRunError,
    astream,
    parts,
    state,
    stream,
    stream_events,
)

install()

__version__ = "0.1.0"

__all__ = [
    "ALL_MODES",
    "GraphRecorder",
    "NotAGraphRunError",
    "arecord",
    "astream",
    "parts",
    "record",
    "replay_agent",
    "state",
    "stream",
    "stream_events",
]
