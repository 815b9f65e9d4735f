"""runlog: event-sourced run logs for LLM and agent pipelines.

Record runs as immutable start/stream/end events in an append-only store (SQLite by
default, PostgreSQL for teams), follow them live from other processes, replay them
byte for byte, and fold them into LangChain-compatible run-log views.

    >>> import runlog
    >>> store = runlog.open(":memory:")
    >>> with store.run("hello", inputs={"q": "hi"}) as run:
    ...     run.stream("Hel")
    ...     run.stream("lo")
    ...     run.end(outputs="Hello")
    >>> [e.kind for e in store.events()]
    ['start', 'stream', 'stream', 'end']

This module declares the public API; everything else is importable from its module
but not promised to stay where it is.
"""

from __future__ import annotations

from runlog.api import Store, VerifyReport, open
from runlog.codec import Opaque
from runlog.diff import diff
from runlog.errors import (
    AppendOnlyError,
    CorruptStoreError,
    DuplicateRunError,
    EncodingError,
    EventRejectedError,
    ExportFileError,
    ImportConflictError,
    InvalidEventError,
    NotARunlogStoreError,
    NotCommittedError,
    RunlogError,
    RunStateError,
    SchemaVersionError,
    StoreError,
    StoreNotFoundError,
    StoreUnavailableError,
    UnknownRunError,
    WriteError,
)
from runlog.events import ErrorInfo, Event, RunInfo
from runlog.exporters import export, import_jsonl
from runlog.filters import ANY, Filter
from runlog.lifecycle import PruneReport
from runlog.recorder import Run, RunScope, current_run, trace
from runlog.reducers import LogEntry, RunLog, RunLogPatch, RunState, fold
from runlog.store.stats import StoreStats
from runlog.tail import ATail, Tail, TailNotice

__version__ = "0.1.0"

__all__ = [
    "ANY",
    "ATail",
    "AppendOnlyError",
    "CorruptStoreError",
    "DuplicateRunError",
    "EncodingError",
    "ErrorInfo",
    "Event",
    "EventRejectedError",
    "ExportFileError",
    "Filter",
    "ImportConflictError",
    "InvalidEventError",
    "LogEntry",
    "NotARunlogStoreError",
    "NotCommittedError",
    "Opaque",
    "PruneReport",
    "Run",
    "RunInfo",
    "RunLog",
    "RunLogPatch",
    "RunScope",
    "RunState",
    "RunStateError",
    "RunlogError",
    "SchemaVersionError",
    "Store",
    "StoreError",
    "StoreNotFoundError",
    "StoreStats",
    "StoreUnavailableError",
    "Tail",
    "TailNotice",
    "UnknownRunError",
    "VerifyReport",
    "WriteError",
    "current_run",
    "diff",
    "export",
    "fold",
    "import_jsonl",
    "open",
    "trace",
]
