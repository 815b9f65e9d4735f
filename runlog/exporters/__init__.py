"""Exports and imports: lossless JSONL, OTLP JSON, and Chrome / Perfetto traces.

``runlog.export(store, format, out, run_id=..., trace_id=..., filter=...)`` writes the
selected events in one of three formats (``docs/exports.md``):

``jsonl``   every event with its stored bytes and hash-chain digest; the only format
            that can be imported back (:func:`import_jsonl`) and verified
            (:func:`verify_jsonl`).
``otlp``    the OTLP/JSON encoding of an ``ExportTraceServiceRequest``: one span per
            run, OpenTelemetry GenAI attributes, one span event per streamed chunk.
``chrome``  the Trace Event Format (chrome://tracing, Perfetto UI): one slice per run,
            an instant per token, a tokens-per-second counter; split by size.

All three stream: they read the store a page at a time and write as they go.
"""

from __future__ import annotations

from typing import Any, Literal

from runlog.exporters._common import ExportResult, Output, Progress, Selection, StoreLike
from runlog.exporters.jsonl import (
    FileReport,
    ImportResult,
    export_jsonl,
    import_jsonl,
    verify_jsonl,
)
from runlog.filters import Filter

__all__ = [
    "FORMATS",
    "ExportResult",
    "FileReport",
    "ImportResult",
    "Selection",
    "export",
    "import_jsonl",
    "verify_jsonl",
]

Format = Literal["jsonl", "otlp", "chrome"]
FORMATS: tuple[str, ...] = ("jsonl", "otlp", "chrome")


def export(
    store: StoreLike,
    format: Format,
    out: Output,
    *,
    run_id: str | None = None,
    trace_id: str | None = None,
    filter: Filter | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> ExportResult:
    """Export events of ``store`` to ``out`` in ``format``.

    Args:
        store: an open :class:`runlog.Store`.
        format: ``"jsonl"``, ``"otlp"`` or ``"chrome"`` (see the module docstring).
        out: a path, ``"-"`` for standard output, or a binary file object. A path is
            written under a temporary name and renamed when complete.
        run_id: only this run and its descendants (an id, or a unique prefix/suffix).
        trace_id: only this trace.
        filter: only runs passing this :class:`~runlog.Filter`.
        progress: called with the number of events handled since its last call.
        options: format options: ``max_value_bytes`` (otlp, chrome: how much of each
            input/output is kept), ``max_bytes`` (chrome: split into files of at most
            this size).

    Returns:
        What was written: event and run counts, the files.
    """
    selection = Selection(run_id=run_id, trace_id=trace_id, filter=filter)
    if format == "jsonl":
        if options:
            raise TypeError(f"the jsonl format takes no options, got {sorted(options)}")
        return export_jsonl(store, out, selection, progress=progress)
    if format == "otlp":
        from runlog.exporters.otlp import export_otlp

        return export_otlp(store, out, selection, progress=progress, **options)
    if format == "chrome":
        from runlog.exporters.chrome import export_chrome

        return export_chrome(store, out, selection, progress=progress, **options)
    raise ValueError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
