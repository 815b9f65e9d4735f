"""Reducers: stored events folded into LangChain-compatible views.

* :func:`log_view` — ``astream_log``: :class:`RunLogPatch` per patch, or cumulative
  :class:`RunLog` with ``diff=False``;
* :func:`events_view` — ``astream_events(version="v2")`` dicts;
* :func:`fold` — the final :class:`RunState`; :class:`StateIndex` answers "the state
  as of seq N" without refolding from the start (``Store.state_at``).

Both views consume their events lazily, so the live tail feeds them the same way a
replay does, and :func:`view_json_line` gives the one JSON line per item that both
``runlog replay --view`` and the tail print. ``docs/views.md`` has the rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from runlog import codec
from runlog.reducers.events import EventsReducer, ReplayedError, error_object, events_view
from runlog.reducers.log import LogReducer, RunLogJournal, fold, log_view
from runlog.reducers.snapshots import StateIndex
from runlog.reducers.types import LogEntry, OpsPrefix, RunLog, RunLogPatch, RunState

__all__ = [
    "VIEWS",
    "EventsReducer",
    "LogEntry",
    "LogReducer",
    "OpsPrefix",
    "ReplayedError",
    "RunLog",
    "RunLogJournal",
    "RunLogPatch",
    "RunState",
    "StateIndex",
    "error_object",
    "events_view",
    "fold",
    "log_view",
    "view_json_line",
]

VIEWS: dict[str, Callable[..., Iterator[Any]]] = {"log": log_view, "events": events_view}
"""The derived views ``Store.replay(view=...)`` dispatches to."""


def view_json_line(item: Any) -> bytes:
    """The JSON line (with ``\\n``) printed for one view item, deterministic bytes.

    * ``RunLogPatch`` → ``{"ops": [...]}``
    * ``RunLog`` → ``{"ops_added": [...], "n_ops": N, "state": {...}}`` (the cumulative
      ops are not repeated on every line: that would be quadratic output)
    * an events-view dict → the dict.

    Values that are not plain JSON (messages, Documents, exceptions) are written with
    the runlog codec's tags (``docs/codec.md``); unknown objects as ``$rl:repr``.
    """
    if isinstance(item, RunLog):
        value: Any = {"ops_added": list(item.ops_added), "n_ops": len(item.ops),
                      "state": item.state}
    elif isinstance(item, RunLogPatch):
        value = {"ops": list(item.ops)}
    else:
        value = item
    return codec.encode(value, lossy=True) + b"\n"
