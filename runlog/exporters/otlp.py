"""OTLP JSON: runs as OpenTelemetry spans, in the OTLP/JSON file encoding.

The output is one ``ExportTraceServiceRequest`` (what an OTLP/HTTP exporter POSTs to
``/v1/traces`` with ``Content-Type: application/json``, and what the Collector's
``otlpjsonfile`` receiver reads): one resource, one scope, one span per run.

* ids: ``traceId`` is the trace's UUID (the root run id) as 32 hex digits, or a
  BLAKE2b-128 of the id when it is not a UUID; ``spanId`` is BLAKE2b-64 of the run id.
  Both are deterministic, so two exports of one run agree and child spans find their
  parent (``parentSpanId``) even across files. OTLP/JSON writes ids as hex, not base64.
* times: ``startTimeUnixNano``/``endTimeUnixNano`` from the start and end events (a run
  with no end yet ends at its last event and has ``runlog.status`` running or
  abandoned); each streamed chunk is a span event at its own time, so time to first
  token and gaps between tokens survive.
* status: ``ERROR`` (code 2) with ``Type: message`` for a failed run, plus an
  ``exception`` span event with ``exception.type/message/stacktrace``; unset otherwise.
* attributes: OpenTelemetry GenAI semantic conventions where they apply
  (``gen_ai.operation.name`` from the run type, ``gen_ai.request.model`` and friends from
  LangChain's ``ls_*`` metadata, ``gen_ai.usage.input_tokens/output_tokens`` when the
  outputs report usage) and ``runlog.*`` for the rest (run id, type, name, tags,
  metadata, inputs, outputs). Inputs, outputs and chunks are JSON text cut to
  ``max_value_bytes``.

Streaming: a span is written when its run ends. Until then its span events wait in a
buffer that moves to a temporary file past 256 KiB, so a long stream costs disk, not
memory; memory holds only the runs open at one point of the log.
"""

from __future__ import annotations

import hashlib
import tempfile
import uuid
from collections.abc import Iterable
from typing import IO, Any

from runlog import codec
from runlog.events import Event
from runlog.exporters._common import (
    ExportResult,
    Output,
    Progress,
    Selection,
    StoreLike,
    open_output,
    trimmed_json,
)

__all__ = ["DEFAULT_MAX_VALUE_BYTES", "export_otlp", "span_id", "trace_id_hex"]

DEFAULT_MAX_VALUE_BYTES = 65536
SPOOL_BYTES = 256 * 1024

SPAN_KIND_INTERNAL, SPAN_KIND_CLIENT = 1, 3
STATUS_ERROR = 2

OPERATIONS = {
    "chat_model": "chat",
    "llm": "text_completion",
    "embedding": "embeddings",
    "tool": "execute_tool",
}
"""``gen_ai.operation.name`` per run type (GenAI semantic conventions' well-known values)."""

_CLIENT_TYPES = frozenset({"chat_model", "llm", "embedding"})
_LS_ATTRIBUTES = {
    "ls_model_name": "gen_ai.request.model",
    "ls_provider": "gen_ai.provider.name",
    "ls_temperature": "gen_ai.request.temperature",
    "ls_max_tokens": "gen_ai.request.max_tokens",
    "ls_stop": "gen_ai.request.stop_sequences",
}
"""LangChain's standard tracing metadata and the GenAI attribute each one maps to."""

_INPUT_KEYS = ("input_tokens", "prompt_tokens")
_OUTPUT_KEYS = ("output_tokens", "completion_tokens")


def trace_id_hex(trace_id: str) -> str:
    """The OTLP ``traceId`` of a runlog trace (32 hex digits)."""
    try:
        return uuid.UUID(trace_id).hex
    except ValueError:
        return hashlib.blake2b(trace_id.encode("utf-8", "surrogatepass"),
                               digest_size=16).hexdigest()


def span_id(run_id: str) -> str:
    """The OTLP ``spanId`` of a run (16 hex digits)."""
    return hashlib.blake2b(run_id.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


# ----------------------------------------------------------------------- values


def _json(value: Any) -> bytes:
    return codec.dumps_plain(value)


def any_value(value: Any, limit: int) -> dict[str, Any]:
    """An OTLP ``AnyValue`` for a plain JSON value (as parsed from an envelope)."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}  # int64 travels as a decimal string in OTLP/JSON
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": trimmed_json(value, limit)}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return {"arrayValue": {"values": [{"stringValue": trimmed_json(v, limit)}
                                          for v in value]}}
    return {"stringValue": trimmed_json(value, limit)}


def _attr(key: str, value: dict[str, Any]) -> bytes:
    return b'{"key":' + _json(key) + b',"value":' + _json(value) + b"}"


def _usage(outputs: Any, budget: int = 2000) -> tuple[int | None, int | None]:
    """Token usage reported in a run's outputs, wherever LangChain-style code puts it.

    Looks (breadth first, a bounded number of nodes) for a dict under ``usage``,
    ``usage_metadata`` or ``token_usage`` with input/prompt and output/completion counts.
    """
    todo: list[Any] = [outputs]
    seen = 0
    while todo and seen < budget:
        node = todo.pop(0)
        seen += 1
        if isinstance(node, dict):
            for key in ("usage_metadata", "usage", "token_usage"):
                u = node.get(key)
                if isinstance(u, dict):
                    found_in = next((u[k] for k in _INPUT_KEYS if isinstance(u.get(k), int)),
                                    None)
                    found_out = next((u[k] for k in _OUTPUT_KEYS
                                      if isinstance(u.get(k), int)), None)
                    if found_in is not None or found_out is not None:
                        return found_in, found_out
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return None, None


# ----------------------------------------------------------------------- spans


class _Spool:
    """Encoded span events of one open run: in memory, then in a temporary file."""

    __slots__ = ("count", "file", "parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.count = 0
        self.file: IO[bytes] | None = None

    def add(self, encoded: bytes) -> None:
        if self.count:
            encoded = b"," + encoded
        self.count += 1
        if self.file is not None:
            self.file.write(encoded)
            return
        self.parts.append(encoded)
        self.size += len(encoded)
        if self.size > SPOOL_BYTES:
            self.file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by write_to
            self.file.write(b"".join(self.parts))
            self.parts, self.size = [], 0

    def write_to(self, fp: IO[bytes]) -> int:
        if self.file is None:
            data = b"".join(self.parts)
            fp.write(data)
            return len(data)
        f = self.file
        f.seek(0)
        n = 0
        while chunk := f.read(1 << 20):
            fp.write(chunk)
            n += len(chunk)
        f.close()
        return n


class _Span:
    """What is known of a run between its start and its end."""

    __slots__ = ("attrs", "events", "head", "last_ns", "run_type", "tokens")

    def __init__(self, head: bytes, attrs: list[bytes], run_type: str, start_ns: int) -> None:
        self.head = head
        self.attrs = attrs
        self.events = _Spool()
        self.last_ns = start_ns
        self.run_type = run_type
        self.tokens = 0


def _event(name: str, time_ns: int, attrs: Iterable[bytes]) -> bytes:
    return (b'{"timeUnixNano":"' + str(time_ns).encode() + b'","name":' + _json(name)
            + b',"attributes":[' + b",".join(attrs) + b"]}")


def _start_span(e: Event, limit: int) -> _Span:
    env = e.envelope
    run_id, run_type, name = env["run_id"], env["run_type"], env["name"]
    parent = env["parent_id"]
    start_ns = env["time"] * 1000
    head = (b'{"traceId":"' + trace_id_hex(env["trace_id"]).encode()
            + b'","spanId":"' + span_id(run_id).encode() + b'"'
            + (b',"parentSpanId":"' + span_id(parent).encode() + b'"' if parent else b"")
            + b',"name":' + _json(name)
            + b',"kind":' + str(SPAN_KIND_CLIENT if run_type in _CLIENT_TYPES
                                else SPAN_KIND_INTERNAL).encode()
            + b',"startTimeUnixNano":"' + str(start_ns).encode() + b'"')
    attrs = [
        _attr("runlog.run_id", {"stringValue": run_id}),
        _attr("runlog.trace_id", {"stringValue": env["trace_id"]}),
        _attr("runlog.name", {"stringValue": name}),
        _attr("runlog.run_type", {"stringValue": run_type}),
    ]
    if parent:
        attrs.append(_attr("runlog.parent_id", {"stringValue": parent}))
    op = OPERATIONS.get(run_type)
    if op is not None:
        attrs.append(_attr("gen_ai.operation.name", {"stringValue": op}))
    if run_type == "tool":
        attrs.append(_attr("gen_ai.tool.name", {"stringValue": name}))
    tags = env["tags"]
    if tags:
        attrs.append(_attr("runlog.tags", any_value(tags, limit)))
    metadata = env["metadata"]
    if isinstance(metadata, dict):
        for key, value in metadata.items():
            attrs.append(_attr(f"runlog.metadata.{key}", any_value(value, limit)))
            semconv = _LS_ATTRIBUTES.get(key)
            if semconv is not None and value is not None:
                attrs.append(_attr(semconv, any_value(value, limit)))
    attrs.append(_attr("runlog.inputs", {"stringValue": trimmed_json(env["data"], limit)}))
    return _Span(head, attrs, run_type, start_ns)


def _kv(key: str, text: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": text}}


def _stream_event(span: _Span, e: Event, limit: int) -> None:
    """One span event for a streamed event, encoded in one ``dumps`` (the hot path)."""
    env = e.envelope
    time_ns = env["time"] * 1000
    span.last_ns = time_ns
    channel = env.get("channel", "output")
    data = env["data"]
    if channel == "token" and isinstance(data, dict):
        span.tokens += 1
        attrs = [_kv("runlog.token", trimmed_json(data.get("token"), limit))]
        if data.get("chunk") is not None:
            attrs.append(_kv("runlog.chunk", trimmed_json(data["chunk"], limit)))
        name = "runlog.token"
    elif channel == "custom" and isinstance(data, dict) and isinstance(data.get("name"), str):
        attrs = [_kv("runlog.data", trimmed_json(data.get("data"), limit))]
        name = data["name"]
    else:
        attrs = [_kv("runlog.chunk", trimmed_json(data, limit)),
                 _kv("runlog.channel", str(channel))]
        name = "runlog.chunk"
    span.events.add(_json({"timeUnixNano": str(time_ns), "name": name, "attributes": attrs}))


def _write_span(fp: IO[bytes], span: _Span, end_ns: int, status: str,
                extra: list[bytes], error: dict[str, Any] | None) -> int:
    attrs = [*span.attrs, *extra, _attr("runlog.status", {"stringValue": status})]
    if span.tokens:
        attrs.append(_attr("runlog.streamed_tokens", {"intValue": str(span.tokens)}))
    status_json = b"{}"
    if error is not None:
        etype, message = str(error.get("type", "")), str(error.get("message", ""))
        status_json = (b'{"code":' + str(STATUS_ERROR).encode() + b',"message":'
                       + _json(f"{etype}: {message}") + b"}")
        span.events.add(_event("exception", end_ns, [
            _attr("exception.type", {"stringValue": etype}),
            _attr("exception.message", {"stringValue": message}),
            _attr("exception.stacktrace", {"stringValue": str(error.get("traceback", ""))}),
        ]))
    head = (span.head + b',"endTimeUnixNano":"' + str(end_ns).encode() + b'","attributes":['
            + b",".join(attrs) + b'],"events":[')
    fp.write(head)
    n = len(head) + span.events.write_to(fp)
    tail = b'],"status":' + status_json + b"}"
    fp.write(tail)
    return n + len(tail)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("runlog-engine")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def export_otlp(store: StoreLike, out: Output, selection: Selection | None = None, *,
                progress: Progress | None = None,
                max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> ExportResult:
    """Write the selected runs as one OTLP/JSON ``ExportTraceServiceRequest``."""
    sel = (selection or Selection()).pinned(store)
    limit = max_value_bytes
    result = ExportResult("otlp")
    open_spans: dict[str, _Span] = {}
    with open_output(out) as (fp, name):
        head = (b'{"resourceSpans":[{"resource":{"attributes":['
                + _attr("service.name", {"stringValue": "runlog"})
                + b']},"scopeSpans":[{"scope":{"name":"runlog","version":'
                + _json(_version()) + b'},"spans":[')
        fp.write(head)
        written = len(head)
        first = True
        for page in sel.pages(store):
            for e in page:
                env = e.envelope
                kind, run_id = env["kind"], env["run_id"]
                if kind == "start":
                    open_spans[run_id] = _start_span(e, limit)
                    continue
                span = open_spans.get(run_id)
                if span is None:  # pragma: no cover - selections keep whole runs
                    continue
                if kind == "stream":
                    _stream_event(span, e, limit)
                    continue
                del open_spans[run_id]
                error = env.get("error")
                extra = [_attr("runlog.outputs",
                               {"stringValue": trimmed_json(env["data"], limit)})]
                if span.run_type in _CLIENT_TYPES:
                    tokens_in, tokens_out = _usage(env["data"])
                    if tokens_in is not None:
                        extra.append(_attr("gen_ai.usage.input_tokens",
                                           {"intValue": str(tokens_in)}))
                    if tokens_out is not None:
                        extra.append(_attr("gen_ai.usage.output_tokens",
                                           {"intValue": str(tokens_out)}))
                if not first:
                    fp.write(b",")
                    written += 1
                first = False
                written += _write_span(fp, span, env["time"] * 1000,
                                       "error" if error is not None else "ok", extra,
                                       error if isinstance(error, dict) else None)
                result.runs += 1
            result.events += len(page)
            if progress is not None:
                progress(len(page))
        for run_id, span in open_spans.items():  # runs without an end (yet)
            info = store.backend.get_run(run_id)
            status = info.status if info is not None else "running"
            if not first:
                fp.write(b",")
                written += 1
            first = False
            written += _write_span(fp, span, span.last_ns, status, [], None)
            result.runs += 1
        tail = b"]}]}]}\n"
        fp.write(tail)
        result.bytes_written = written + len(tail)
        result.files.append(name)
    return result
