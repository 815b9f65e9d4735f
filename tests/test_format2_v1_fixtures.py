"""Format-1 stores and files, as main wrote them before event format 2, keep reading.

The fixtures in ``tests/fixtures/format1/`` were recorded by the code that wrote
format 1 (``tests/format1_cases.py`` says how); these tests read them with today's code:
every event's bytes and digest as stored, the values decoded exactly as they were
passed to the recorder, the runs listing, the hash chains, the log view, and the JSONL
export, which must verify and import into every backend with the same bytes and chains.
Migrations to format 2 start from these same files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import format1_cases as cases
import pytest
from conftest import make_store

import runlog
from runlog.events import Event
from runlog.exporters.jsonl import import_jsonl, verify_jsonl

FIXTURES = Path(__file__).parent / "fixtures" / "format1"
EXPECTED: dict[str, Any] = json.loads((FIXTURES / "expected.json").read_text())


@pytest.fixture
def v1_store(tmp_path: Path) -> Any:
    """The fixture store, copied (opening a store may add what newer code expects)."""
    db = tmp_path / "store.db"
    shutil.copyfile(FIXTURES / "store.db", db)
    s = runlog.open(db, create=False)
    try:
        yield s
    finally:
        s.close()


def _comparable(value: Any) -> Any:
    """``value`` with exceptions as (class, args): two revived errors never compare equal."""
    if isinstance(value, BaseException):
        return (type(value), value.args)
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    return value


def _by_name(events: list[Event], name: str) -> list[Event]:
    return [e for e in events if e.name == name]


def test_every_event_reads_back_with_its_stored_bytes_and_digest(v1_store: Any) -> None:
    got = [{"seq": e.seq, "raw": e.raw.decode(), "digest": e.digest.hex(),
            "run_id": e.run_id, "kind": e.kind, "name": e.name}
           for e in v1_store.events(digests=True)]
    assert got == EXPECTED["events"]


def test_values_decode_to_what_was_recorded(v1_store: Any) -> None:
    events = list(v1_store.events())
    start, *streams, end = _by_name(events, "pipeline")
    assert start.kind == "start"
    assert end.kind == "end"
    assert start.data == cases.INPUTS
    assert start.tags == tuple(cases.TAGS)
    assert start.metadata == cases.METADATA
    assert start.parent_id is None
    assert start.trace_id == start.run_id
    assert start.time_us == cases.T0
    outputs = [e.data for e in streams if e.channel == "output"]
    assert outputs == cases.CHUNKS
    (custom,) = [e for e in streams if e.channel == "custom"]
    assert custom.data == {"name": cases.CUSTOM[0], "data": cases.CUSTOM[1]}
    assert end.data == cases.OUTPUTS
    assert end.error is None

    model = _by_name(events, "model")
    assert [e.data for e in model if e.kind == "stream"] == [
        {"token": t, "chunk": c} for t, c in cases.TOKENS]
    assert all(e.channel == "token" for e in model if e.kind == "stream")
    # a child inherits the root's tags and metadata, and adds its own
    assert model[0].tags == tuple(cases.TAGS)
    assert model[0].metadata == {**cases.METADATA, "ls_model_name": "fake"}
    assert model[0].parent_id == start.run_id
    assert model[0].trace_id == start.run_id

    search = _by_name(events, "search")
    assert search[0].tags == ("own",)
    assert search[0].metadata == {}
    assert search[0].data == cases.CHILD_INPUTS
    assert search[-1].data == cases.CHILD_OUTPUTS

    tool_end = _by_name(events, "calculator")[-1]
    assert tool_end.error is not None
    assert (tool_end.error.type, tool_end.error.message) == ("ValueError", str(cases.ERROR))
    assert "ValueError" in tool_end.error.traceback
    assert tool_end.error.args == cases.ERROR.args
    assert tool_end.has_inputs
    assert tool_end.inputs == cases.FINAL_INPUTS


def test_langchain_chunks_revive_as_the_messages_streamed(v1_store: Any) -> None:
    from langchain_core.messages import AIMessageChunk
    from runlog_langchain.codec import register

    register()  # what a reader importing the adapter does: the lc tag revives messages
    events = list(v1_store.events())
    model_tokens = [e for e in _by_name(events, "GenericFakeChatModel") if e.kind == "stream"]
    assert len(model_tokens) == cases.LC_TOKENS
    for e in model_tokens:
        chunk = e.data["chunk"]
        assert isinstance(chunk, AIMessageChunk)
        assert chunk.content == e.data["token"]
        assert chunk.id == f"lc_run--{e.run_id}"
    parsed = [e.data for e in _by_name(events, "StrOutputParser") if e.kind == "stream"]
    assert "".join(parsed) == " ".join(["tok"] * ((cases.LC_TOKENS + 1) // 2))


def test_runs_listing_and_status(v1_store: Any) -> None:
    runs = [{"run_id": r.run_id, "trace_id": r.trace_id, "parent_id": r.parent_id,
             "name": r.name, "run_type": r.run_type, "status": r.status,
             "event_count": r.event_count, "tags": list(r.tags),
             "start_seq": r.start_seq, "end_seq": r.end_seq}
            for r in v1_store.runs(newest_first=False)]
    assert runs == EXPECTED["runs"]
    statuses = {r["name"]: r["status"] for r in runs}
    assert statuses["left open"] == "abandoned"
    assert statuses["calculator"] == "error"
    assert statuses["pipeline"] == "ok"


def test_chains_verify(v1_store: Any) -> None:
    report = v1_store.verify()
    assert report.ok, report.first_error
    assert report.events == len(EXPECTED["events"])


def test_views_fold_the_recorded_stream_as_in_the_reference_model(v1_store: Any) -> None:
    """The log and events views of the fixture equal those of the in-memory oracle
    holding the same events (imported from the fixture's own export)."""
    root = next(r for r in v1_store.runs() if r.name == "pipeline")
    state = v1_store.state_at(root.run_id)
    assert state["streamed_output"] == cases.CHUNKS
    oracle = runlog.open(":memory:")
    try:
        import_jsonl(oracle, FIXTURES / "export.jsonl")
        assert state == oracle.state_at(root.run_id)
        for view in ("log", "events"):
            assert (_comparable(list(v1_store.replay(root.run_id, view)))
                    == _comparable(list(oracle.replay(root.run_id, view))))
    finally:
        oracle.close()


def test_the_format1_export_verifies() -> None:
    report = verify_jsonl(FIXTURES / "export.jsonl")
    assert report.ok, report.first_error
    assert report.events == len(EXPECTED["events"])


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
def test_the_format1_export_imports_with_its_bytes_and_chains(kind: str,
                                                              tmp_path: Path) -> None:
    if kind == "postgres":
        import pg_support

        pg_support.ensure_server()
    store = make_store(kind, tmp_path)
    try:
        result = import_jsonl(store, FIXTURES / "export.jsonl")
        assert result.events == len(EXPECTED["events"])
        got = [(e.raw.decode(), e.digest.hex()) for e in store.events(digests=True)]
        assert got == [(e["raw"], e["digest"]) for e in EXPECTED["events"]]
        assert store.verify().ok
    finally:
        store.close()
