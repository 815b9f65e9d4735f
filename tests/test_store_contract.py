"""The store contract: every backend in ``BACKENDS`` must pass this file unchanged."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

import runlog
from runlog import ANY, Filter


def record_sample(store: runlog.Store) -> tuple[str, str, str]:
    """A root with a retriever child and a streaming model child; returns their ids."""
    with store.run("rag", inputs={"q": "hi"}, tags=["demo"], metadata={"user": "ann"}) as root:
        with root.child("Docs", "retriever", inputs={"query": "hi"}) as r:
            r.end(outputs={"documents": ["d1"]})
        with root.child("model", "chat_model", tags=["llm-step"],
                        metadata={"ls_model_name": "fake"}) as m:
            for t in ["Hel", "lo"]:
                m.token(t)
            m.end(outputs={"content": "Hello"})
        root.end(outputs={"answer": "Hello"})
    return root.id, r.id, m.id


def test_seq_is_gap_free_from_one_in_commit_order(store: runlog.Store) -> None:
    """Seqs start at 1, have no gaps, and follow the order events were recorded."""
    record_sample(store)
    events = list(store.events())
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    kinds = [(e.name, e.kind) for e in events]
    assert kinds == [
        ("rag", "start"), ("Docs", "start"), ("Docs", "end"), ("model", "start"),
        ("model", "stream"), ("model", "stream"), ("model", "end"), ("rag", "end"),
    ]


def test_event_fields_are_self_contained(store: runlog.Store) -> None:
    """Every event carries its run's name, type, tags, metadata and ids: no join needed."""
    root_id, _, model_id = record_sample(store)
    token = next(e for e in store.events() if e.kind == "stream")
    assert token.run_id == model_id
    assert token.parent_id == root_id
    assert token.trace_id == root_id
    assert token.name == "model"
    assert token.run_type == "chat_model"
    assert token.tags == ("demo", "llm-step")  # inherited from the root, then its own
    assert token.metadata == {"user": "ann", "ls_model_name": "fake"}
    assert token.channel == "token"
    assert token.data == {"token": "Hel", "chunk": None}
    assert token.time.tzinfo is dt.UTC
    uuid.UUID(token.run_id)
    assert uuid.UUID(token.run_id).version == 7


def test_event_is_immutable(store: runlog.Store) -> None:
    record_sample(store)
    e = next(store.events())
    with pytest.raises(AttributeError):
        e.seq = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        e.data = {}  # type: ignore[misc]


def test_replay_returns_the_stored_bytes_of_the_subtree(store: runlog.Store) -> None:
    """replay(root) is the whole trace; replay(child) only that child's subtree."""
    root_id, doc_id, _ = record_sample(store)
    all_events = list(store.events())
    replayed = list(store.replay(root_id))
    assert [e.raw for e in replayed] == [e.raw for e in all_events]
    sub = list(store.replay(doc_id))
    assert [e.kind for e in sub] == ["start", "end"]
    assert all(e.run_id == doc_id for e in sub)


def test_events_by_run_trace_and_cursor(store: runlog.Store) -> None:
    root_id, doc_id, model_id = record_sample(store)
    record_sample(store)  # a second trace
    assert [e.kind for e in store.events(run_id=model_id)] == ["start", "stream", "stream", "end"]
    first_trace = list(store.events(trace_id=root_id))
    assert len(first_trace) == 8
    assert {e.trace_id for e in first_trace} == {root_id}
    assert [e.seq for e in store.events(after=14)] == [15, 16]
    assert [e.seq for e in store.events(after=3, until=5)] == [4, 5]
    assert [e.seq for e in store.events(after=0, page_size=3)] == list(range(1, 17))
    assert list(store.events(run_id=doc_id, trace_id=str(uuid.uuid4()))) == []


def test_filters_apply_to_events(store: runlog.Store) -> None:
    record_sample(store)
    names = {e.name for e in store.events(filter=Filter(include_types=["retriever"]))}
    assert names == {"Docs"}
    names = {e.name for e in store.events(filter=Filter(exclude_tags=["llm-step"]))}
    assert names == {"rag", "Docs"}
    names = {e.name for e in store.events(filter=Filter(include_metadata={"ls_model_name": ANY}))}
    assert names == {"model"}
    names = {e.name for e in store.events(
        filter=Filter(include_tags=["demo"], exclude_names=["rag"]))}
    assert names == {"Docs", "model"}
    assert list(store.events(filter=Filter(include_names=[]))) == []


def test_runs_listing_and_status(store: runlog.Store) -> None:
    root_id, _, model_id = record_sample(store)
    def broken() -> None:
        with store.run("broken") as failing:
            failing.stream("partial")
            _ = 1 / 0

    with pytest.raises(ZeroDivisionError):
        broken()
    open_run = store.start_run("still-going")
    open_run.stream("x")
    store.flush()

    roots = store.runs(roots_only=True)
    assert [r.name for r in roots] == ["still-going", "broken", "rag"]
    by_name = {r.name: r for r in store.runs()}
    assert by_name["rag"].status == "ok"
    assert by_name["rag"].event_count == 2
    assert by_name["model"].event_count == 4
    assert by_name["model"].parent_id == root_id
    assert by_name["broken"].status == "error"
    assert by_name["broken"].error is not None
    assert by_name["broken"].error.type == "ZeroDivisionError"
    assert "1 / 0" in by_name["broken"].error.traceback
    assert by_name["still-going"].status == "running"
    assert by_name["still-going"].event_count == 2
    assert by_name["still-going"].end_time is None
    assert [r.name for r in store.runs(status="error")] == ["broken"]
    assert [r.name for r in store.trace_runs(root_id)] == ["rag", "Docs", "model"]
    info = store.run_info(model_id[-12:])  # the random tail of a UUIDv7 identifies it
    assert info.run_id == model_id
    assert info.duration is not None


def test_unknown_run_is_a_clear_error(store: runlog.Store) -> None:
    record_sample(store)
    with pytest.raises(runlog.UnknownRunError, match="no run"):
        store.run_info("0000000-not-a-run")
    with pytest.raises(runlog.UnknownRunError):
        list(store.replay(str(uuid.uuid4())))


def test_hash_chains_verify(store: runlog.Store) -> None:
    record_sample(store)
    report = store.verify()
    assert report.ok
    assert report.events == 8
    assert report.runs == 3


def test_open_run_of_a_closed_writer_is_abandoned(store: runlog.Store) -> None:
    """When the writer goes away with a run still open, readers see it abandoned."""
    run = store.start_run("orphan")
    run.stream("a")
    store.flush()
    assert store.runs()[0].status == "running"
    store.writer.close()
    assert store.runs()[0].status == "abandoned"


def test_end_twice_and_stream_after_end_are_refused(store: runlog.Store) -> None:
    run = store.start_run("once")
    run.end("done")
    with pytest.raises(runlog.RunStateError, match="already ended"):
        run.stream("late")
    with pytest.raises(runlog.RunStateError):
        run.end("again")
    assert [e.kind for e in store.events()] == ["start", "end"]


def test_awkward_values_round_trip_through_the_store(store: runlog.Store) -> None:
    value = {
        "nan": float("nan"), "inf": float("-inf"), "big": 2**80, "surrogate": "a\udc80b",
        "bytes": b"\x00\xff", "tuple": (1, "x"), "set": {3, 1}, "when":
        dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC), "id": uuid.UUID(int=7),
        1: "int key", "$rl:float": "user data that looks like a tag",
    }
    with store.run("awkward", inputs=value) as run:
        run.stream(value)
    start, chunk, _ = list(store.events())
    for decoded in (start.data, chunk.data):
        assert decoded["nan"] != decoded["nan"]
        rest = {k: v for k, v in decoded.items() if k != "nan"}
        assert rest == {k: v for k, v in value.items() if k != "nan"}


def test_recording_into_a_closed_store_is_a_clear_error(store: runlog.Store) -> None:
    """After close nothing can commit an event, so recording says so instead of
    queueing it forever; flush returns (everything was committed at close)."""
    run = store.start_run("before-close")
    run.stream("kept")
    store.writer.close()
    with pytest.raises(runlog.WriteError, match="closed"):
        run.stream("lost?")
    with pytest.raises(runlog.WriteError, match="closed"):
        store.start_run("after-close")
    store.flush(timeout=5)
    assert [e.data for e in store.events() if e.kind == "stream"] == ["kept"]
