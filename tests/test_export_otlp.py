"""OTLP JSON exports, checked with the official OpenTelemetry protobuf classes."""

from __future__ import annotations

import base64
import io
import json
import uuid
from typing import Any

import pytest

import runlog
from runlog.cli.core import record_demo
from runlog.exporters import otlp

pb = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
json_format = pytest.importorskip("google.protobuf.json_format")
trace_pb = pytest.importorskip("opentelemetry.proto.trace.v1.trace_pb2")


def to_proto(data: bytes) -> Any:
    """Parse an OTLP/JSON document with the protobuf classes.

    OTLP/JSON writes trace and span ids as hex where proto3's JSON mapping expects
    base64 for ``bytes``; that is the one rewrite an OTLP receiver does before parsing.
    """
    doc = json.loads(data)
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        assert len(span[key]) == (32 if key == "traceId" else 16)
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return json_format.Parse(json.dumps(doc), pb.ExportTraceServiceRequest())


def export_otlp(store: runlog.Store, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    runlog.export(store, "otlp", buf, **kwargs)
    return buf.getvalue()


def attrs(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        which = kv.value.WhichOneof("value")
        v = getattr(kv.value, which)
        if which == "array_value":
            v = [x.string_value for x in v.values]
        out[kv.key] = v
    return out


def test_demo_is_a_valid_export_trace_service_request(store: runlog.Store) -> None:
    """One span per run with parent, kind, times, status, GenAI and runlog attributes."""
    root_id = record_demo(store)
    store.flush()
    request = to_proto(export_otlp(store))
    spans = request.resource_spans[0].scope_spans[0].spans
    runs = {r.run_id: r for r in store.runs()}
    assert len(spans) == len(runs)
    by_name = {s.name: s for s in spans}
    root = by_name["rag-demo"]
    assert root.trace_id == uuid.UUID(root_id).bytes
    assert root.parent_span_id == b""
    for s in spans:
        a = attrs(s)
        run = runs[a["runlog.run_id"]]
        assert s.trace_id == root.trace_id
        assert s.span_id == bytes.fromhex(otlp.span_id(run.run_id))
        if run.parent_id is not None:
            assert s.parent_span_id == bytes.fromhex(otlp.span_id(run.parent_id))
        assert s.start_time_unix_nano == runlog.events.datetime_to_micros(run.start_time) * 1000
        assert run.end_time is not None
        assert s.end_time_unix_nano == runlog.events.datetime_to_micros(run.end_time) * 1000
        assert a["runlog.name"] == run.name
        assert a["runlog.run_type"] == run.run_type
        assert a["runlog.status"] == run.status
    model = by_name["FakeChatModel"]
    a = attrs(model)
    assert model.kind == trace_pb.Span.SPAN_KIND_CLIENT
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "fake-chat"
    assert a["runlog.metadata.ls_model_name"] == "fake-chat"
    tokens = [e for e in store.events() if e.channel == "token"]
    assert a["gen_ai.usage.output_tokens"] == len(tokens)  # reported in the outputs
    assert [ev.time_unix_nano for ev in model.events] == [t.time_us * 1000 for t in tokens]
    assert [ev.name for ev in model.events] == ["runlog.token"] * len(tokens)
    assert [attrs(ev)["runlog.token"] for ev in model.events] == [t.data["token"]
                                                                  for t in tokens]
    assert attrs(root)["runlog.tags"] == ["demo"]
    assert attrs(by_name["word_count"])["gen_ai.tool.name"] == "word_count"
    failed = by_name["fact_check"]
    assert failed.status.code == trace_pb.Status.STATUS_CODE_ERROR
    assert failed.status.message.startswith("LookupError: no source")
    (exc,) = [ev for ev in failed.events if ev.name == "exception"]
    assert attrs(exc)["exception.type"] == "LookupError"
    assert "Traceback" in attrs(exc)["exception.stacktrace"]
    assert root.status.code == trace_pb.Status.STATUS_CODE_UNSET


def test_open_runs_and_custom_events_and_odd_values() -> None:
    """A run without an end is a span to its last event; odd values stay valid JSON."""
    with runlog.open(":memory:") as store:
        run = store.start_run("agent", "chain", inputs={"nan": float("nan"), "b": b"\x00"},
                              metadata={"n": 2**70, "ok": True, "f": 1.5, "s": "x\ud800"})
        run.event("retrieved", {"docs": 3})
        run.stream({"partial": (1, 2)})
        store.flush()
        request = to_proto(export_otlp(store))
    (span,) = request.resource_spans[0].scope_spans[0].spans
    a = attrs(span)
    assert a["runlog.status"] == "running"
    assert span.end_time_unix_nano > span.start_time_unix_nano
    assert [e.name for e in span.events] == ["retrieved", "runlog.chunk"]
    assert a["runlog.metadata.ok"] is True
    assert a["runlog.metadata.f"] == 1.5
    assert '"$rl:int"' in a["runlog.metadata.n"]  # beyond int64: the stored JSON text
    assert "$rl:float" in a["runlog.inputs"]


def test_values_are_cut_to_max_value_bytes() -> None:
    with runlog.open(":memory:") as store:
        with store.run("big", inputs="x" * 5000) as r:
            r.stream("y" * 5000)
            r.end(outputs={"text": "z" * 5000})
        data = export_otlp(store, max_value_bytes=100)
    (span,) = to_proto(data).resource_spans[0].scope_spans[0].spans
    a = attrs(span)
    assert len(a["runlog.inputs"].encode()) <= 100
    assert a["runlog.inputs"].endswith("(5000 bytes)")
    assert len(a["runlog.outputs"].encode()) <= 100
    assert len(attrs(span.events[0])["runlog.chunk"].encode()) <= 100


def test_long_streams_spool_to_disk_and_stay_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Span events past the spool size go through a temporary file, in order."""
    monkeypatch.setattr(otlp, "SPOOL_BYTES", 512)
    with runlog.open(":memory:") as store:
        with store.run("model", "chat_model") as r:
            for i in range(300):
                r.token(f"t{i}")
            r.end(outputs="done")
        data = export_otlp(store)
    (span,) = to_proto(data).resource_spans[0].scope_spans[0].spans
    assert [attrs(e)["runlog.token"] for e in span.events] == [f"t{i}" for i in range(300)]


def test_usage_from_langchain_shapes() -> None:
    assert otlp._usage({"usage_metadata": {"input_tokens": 3, "output_tokens": 5}}) == (3, 5)
    assert otlp._usage({"llm_output": {"token_usage": {"prompt_tokens": 7,
                                                       "completion_tokens": 9}}}) == (7, 9)
    assert otlp._usage({"generations": [[{"message": {"kwargs": {"usage_metadata": {
        "input_tokens": 1, "output_tokens": 2}}}}]]}) == (1, 2)
    assert otlp._usage({"text": "no usage here"}) == (None, None)


def test_selection_and_ids_are_deterministic(store: runlog.Store) -> None:
    root = record_demo(store)
    other = record_demo(store)
    store.flush()
    one = export_otlp(store, trace_id=root)
    assert export_otlp(store, trace_id=root) == one
    spans = to_proto(one).resource_spans[0].scope_spans[0].spans
    assert {s.trace_id for s in spans} == {uuid.UUID(root).bytes}
    assert uuid.UUID(other).hex.encode() not in one
    assert otlp.trace_id_hex("not-a-uuid") != otlp.trace_id_hex("not-a-uuid2")
    assert len(otlp.trace_id_hex("not-a-uuid")) == 32
