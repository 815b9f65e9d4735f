"""Hostile and careless calls into the recorder and the writer (issue 15, items 2, 3a, 4, 7).

One event that cannot be stored fails alone, at the call; whatever a batch still
cannot store is isolated and reported to its producer; a root scope's exit (and
``flush``) either returns with its events committed or says how many are not; a run
id names one run, in the recorder and in the schema; ``@trace`` never breaks the app.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_store

import runlog
from runlog.errors import (
    AppendOnlyError,
    CorruptStoreError,
    DuplicateRunError,
    EventRejectedError,
    InvalidEventError,
    NotCommittedError,
    WriteError,
)
from runlog.events import TIME_MAX, TIME_MIN, chain_digest, now_micros
from runlog.store.base import Pending, WriterInfo

# beyond int64, and inside int64 but outside what Event.time (a datetime) can show
OUT_OF_RANGE = [2**63, -(2**63) - 1, 10**30, TIME_MAX + 1, TIME_MIN - 1, 2**62]


def test_the_extreme_times_readers_can_show_are_recorded(sqlite_store: runlog.Store) -> None:
    with sqlite_store.run("edges", time=TIME_MIN) as run:
        run.stream("last", time=TIME_MAX)
    times = [e.time for e in _events(sqlite_store, run.id)]
    assert times[0].year == 1
    assert times[1].year == 9999


def _events(store: runlog.Store, run_id: str) -> list[Any]:
    return [e for e in store.events() if e.run_id == run_id]


# -- item 2: validated at the call ------------------------------------------------------
@pytest.mark.parametrize("bad", OUT_OF_RANGE)
def test_a_time_out_of_range_is_refused_at_the_call_and_blocks_nothing(
        store: runlog.Store, bad: int) -> None:
    with store.run("other") as other:
        with store.run("victim") as run:
            for call in (lambda: run.stream("x", time=bad), lambda: run.token("t", time=bad),
                         lambda: run.event("e", time=bad)):
                with pytest.raises(InvalidEventError, match="outside the range"):
                    call()
            run.stream("fine")
        other.stream("also fine")
    with pytest.raises(InvalidEventError):
        store.run("late", time=bad).__enter__()
    with store.run("after") as after:
        after.stream(1)
    store.flush()
    assert [e.kind for e in _events(store, run.id)] == ["start", "stream", "end"]
    assert len(_events(store, other.id)) == 3
    assert len(_events(store, after.id)) == 3
    assert {r.name for r in store.runs()} == {"other", "victim", "after"}
    assert store.verify().ok


def test_an_event_over_the_size_limit_is_refused_at_the_call(store: runlog.Store) -> None:
    store.recorder.max_event_bytes = 4096
    with store.run("big") as run:
        with pytest.raises(InvalidEventError, match="over the limit"):
            run.stream("x" * 5000)
        run.stream("x" * 100)
    store.flush()
    assert [e.kind for e in _events(store, run.id)] == ["start", "stream", "end"]


def test_the_default_size_limit_is_below_sqlites() -> None:
    from runlog.recorder import MAX_EVENT_BYTES

    assert MAX_EVENT_BYTES < 1_000_000_000


@pytest.mark.parametrize("bad", [1.5, "2024-01-01", True])
def test_a_time_of_the_wrong_type_is_refused(store: runlog.Store, bad: Any) -> None:
    with store.run("r") as run, pytest.raises(InvalidEventError):
        run.stream("x", time=bad)


# -- item 2: a batch the store refuses part of ------------------------------------------
def _forged(run_id: str, time_us: int, kind: str = "start") -> Pending:
    raw = (b'{"kind":"%s","run_id":"%s","parent_id":null,"trace_id":"%s","name":"f",'
           b'"run_type":"chain","tags":[],"metadata":{},"time":%d,"data":null}'
           % (kind.encode(), run_id.encode(), run_id.encode(), time_us))
    row = (None, b"[]", b"{}") if kind == "start" else None
    return Pending(run_id, run_id, kind, "f", "chain", time_us, raw, chain_digest(None, raw),
                   row)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_an_event_the_database_refuses_is_isolated_and_reported(
        tmp_path: Path, kind: str) -> None:
    """Bypassing the recorder's checks (an event no recorder would queue), the writer
    commits everything else of the batch, reports the refused event once, and goes on."""
    store = make_store(kind, tmp_path, commit_interval=60.0)
    try:
        good = store.recorder.start("good")
        good.stream(1)
        store.writer.put(_forged("forged-1", 2**63))
        good.stream(2)
        with pytest.raises(EventRejectedError, match="forged-1"):
            store.flush()
        store.flush()  # reported once; nothing is stuck
        good.end("done")
        with store.run("later") as later:
            later.stream("x")
        assert [e.kind for e in _events(store, good.id)] == ["start", "stream", "stream", "end"]
        assert len(_events(store, later.id)) == 3
        assert store.backend.get_run("forged-1") is None
        assert store.writer.pending() == 0
    finally:
        store.close()


# -- item 3a: one run per run id ---------------------------------------------------------
def test_a_run_id_in_use_is_refused_before_anything_is_written(store: runlog.Store) -> None:
    with store.run("first", run_id="dup-id-1") as first:
        with pytest.raises(DuplicateRunError, match="dup-id-1"):  # open in this process
            store.recorder.start("second", run_id="dup-id-1")
        first.stream("a")
    with pytest.raises(DuplicateRunError):  # ended, still queued or committed
        store.run("third", run_id="dup-id-1").__enter__()
    store.flush()
    with pytest.raises(DuplicateRunError):
        store.recorder.start("fourth", run_id=first.id)
    assert [r.name for r in store.runs()] == ["first"]
    assert [e.kind for e in _events(store, "dup-id-1")] == ["start", "stream", "end"]
    assert store.verify().ok


def test_a_generated_run_id_cannot_be_reused_while_its_start_is_queued(
        tmp_path: Path) -> None:
    store = runlog.open(tmp_path / "runs.db", commit_interval=60.0)
    try:
        run = store.recorder.start("open")
        with pytest.raises(DuplicateRunError):
            store.recorder.start("again", run_id=run.id)
        run.end()
    finally:
        store.close()


def test_a_run_id_in_use_is_refused_by_another_store_handle(backend_kind: str,
                                                            tmp_path: Path) -> None:
    if backend_kind == "memory":
        pytest.skip("a memory store has one handle")
    one, two = make_store(backend_kind, tmp_path), make_store(backend_kind, tmp_path)
    try:
        with one.run("first", run_id="shared-id"):
            pass
        with pytest.raises(DuplicateRunError):
            two.recorder.start("second", run_id="shared-id")
    finally:
        one.close()
        two.close()


def test_the_schema_refuses_a_second_start_from_a_writer_that_does_not_check(
        backend_kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process (an older runlog, a hand-written client) cannot add a second run
    with an id in use either: its start is refused by the store, the writer drops that
    run's events, and the rest of the batch commits."""
    if backend_kind == "memory":
        store = two = make_store("memory", tmp_path, commit_interval=60.0)
    else:
        store = make_store(backend_kind, tmp_path)
        two = make_store(backend_kind, tmp_path, commit_interval=60.0)
    try:
        with store.run("first", run_id="taken") as first:
            first.stream("original")
        monkeypatch.setattr(two.recorder, "_claim", lambda run_id, **kw: None)  # no check
        monkeypatch.setattr(two.recorder, "_recent_ids", {})
        bystander = two.recorder.start("bystander")
        imp = two.recorder.start("impostor", run_id="taken")
        bystander.stream("in the same batch")
        imp.stream("must not join the first run")
        with pytest.raises(EventRejectedError, match="taken"):
            imp.end()  # the end of its root run reports it
        imp._ended = False  # even a handle still open is told at its next call
        with pytest.raises(EventRejectedError, match="taken"):
            imp.stream("more")
        bystander.end("ok")
        store.flush()
        assert [e.data for e in _events(store, "taken") if e.kind == "stream"] == ["original"]
        assert [r.name for r in store.runs() if r.run_id == "taken"] == ["first"]
        assert [e.kind for e in _events(store, bystander.id)] == ["start", "stream", "end"]
        assert store.verify().ok
    finally:
        if two is not store:
            two.close()
        store.close()


def test_every_backend_refuses_a_second_start_event(store: runlog.Store) -> None:
    with store.run("first", run_id="once") as run:
        pass
    store.flush()
    before = store.backend.last_seq()
    with pytest.raises(AppendOnlyError):
        store.backend.append([_forged("once", now_micros())], WriterInfo(writer_id="w"), None)
    assert store.backend.last_seq() == before
    assert [e.kind for e in _events(store, run.id)] == ["start", "end"]


def _drop_index_and_duplicate(path: Path, run_id: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX events_one_start")
    raw, digest = conn.execute("SELECT raw, digest FROM events WHERE run_id = ? "
                               "AND kind = 'start'", (run_id,)).fetchone()
    conn.execute("INSERT INTO events (seq, trace_id, run_id, kind, name, run_type, time, "
                 "raw, digest) SELECT max(seq) + 1, ?, ?, 'start', 'x', 'chain', 0, ?, ? "
                 "FROM events", (run_id, run_id, raw, digest))
    conn.commit()
    conn.close()


@pytest.mark.usefixtures("wide_sqlite_layout")  # edits its columns
def test_an_old_store_gets_the_index_on_open_and_one_with_duplicates_still_opens(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "runs.db"
    with runlog.open(path) as store, store.run("a", run_id="old-run"):
        pass
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX events_one_start")
    conn.commit()
    conn.close()
    with runlog.open(path) as store, pytest.raises(DuplicateRunError):  # index is back
        store.recorder.start("b", run_id="old-run")
    names = [r[0] for r in sqlite3.connect(path).execute(
        "SELECT name FROM sqlite_master WHERE type = 'index'")]
    assert "events_one_start" in names
    _drop_index_and_duplicate(path, "old-run")
    with caplog.at_level(logging.WARNING, logger="runlog"), runlog.open(path) as store:
        assert [r.run_id for r in store.runs()] == ["old-run"]
    assert "several runs with the same id" in caplog.text


# -- item 4: acknowledged means committed -----------------------------------------------
@pytest.fixture
def locked_store(tmp_path: Path) -> Iterator[tuple[runlog.Store, sqlite3.Connection]]:
    """A SQLite store whose write lock a second connection holds (``BEGIN IMMEDIATE``)."""
    path = tmp_path / "runs.db"
    store = runlog.open(path, end_timeout=0.3)
    with store.run("before"):
        pass
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield store, holder
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
        store.close()


def test_a_root_scope_exit_raises_while_its_events_are_not_committed(
        locked_store: tuple[runlog.Store, sqlite3.Connection]) -> None:
    store, holder = locked_store

    def record() -> None:
        with store.run("blocked", run_id="blocked-run") as run:
            for i in range(10):
                run.stream(i)

    with pytest.raises(NotCommittedError, match="12 events not yet committed") as info:
        record()
    assert info.value.pending == 12
    with pytest.raises(NotCommittedError, match="12 events"):
        store.flush(0.2)
    holder.execute("ROLLBACK")
    store.flush()  # the events were kept and commit once the lock is free
    assert len(_events(store, "blocked-run")) == 12


def test_the_apps_exception_is_not_masked_by_an_uncommitted_exit(
        locked_store: tuple[runlog.Store, sqlite3.Connection],
        caplog: pytest.LogCaptureFixture) -> None:
    store, _ = locked_store
    with (pytest.raises(KeyError, match="the app's"),
          caplog.at_level(logging.ERROR, "runlog"), store.run("failing")):
        raise KeyError("the app's")
    assert "not yet committed" in caplog.text


@pytest.mark.anyio
async def test_an_async_root_scope_exit_raises_too(
        locked_store: tuple[runlog.Store, sqlite3.Connection]) -> None:
    store, _ = locked_store

    async def record() -> None:
        async with store.run("blocked") as run:
            await run.astream(1)

    with pytest.raises(NotCommittedError):
        await record()
    with pytest.raises(NotCommittedError):
        await store.aflush(0.2)


@pytest.mark.timeout(60)
def test_backpressure_on_a_locked_store_raises_instead_of_blocking_forever(
        locked_store: tuple[runlog.Store, sqlite3.Connection]) -> None:
    store, holder = locked_store
    store.writer.max_pending = 10
    store.writer.backpressure_timeout = 0.2
    run = store.recorder.start("flood")

    def flood() -> None:
        for i in range(5000):
            run.stream(i)

    with pytest.raises(NotCommittedError, match="this event was not recorded"):
        flood()
    sent = store.writer.pending()
    holder.execute("ROLLBACK")
    run.end()  # the run goes on once the lock is free; nothing queued was dropped
    assert len(_events(store, run.id)) == sent + 1
    assert store.verify().ok


def test_close_says_what_it_could_not_commit(
        locked_store: tuple[runlog.Store, sqlite3.Connection]) -> None:
    store, holder = locked_store
    run = store.recorder.start("unfinished")
    run.stream(1)
    with pytest.raises(NotCommittedError, match="2 events not committed"):
        store.writer.close(timeout=0.2)
    holder.execute("ROLLBACK")
    thread = store.writer._thread
    assert thread is not None
    thread.join()  # the writer keeps going until its queue is committed
    assert len(_events(store, run.id)) == 2


# -- item 7: a damaged store stops recording with a clear error -------------------------
def test_recording_into_a_store_sqlite_reports_malformed_stops_with_a_clear_error(
        sqlite_store: runlog.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def malformed(*args: Any, **kwargs: Any) -> int:
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(sqlite_store.backend, "append", malformed)
    run = sqlite_store.recorder.start("r")
    with pytest.raises(CorruptStoreError, match="damaged"):
        sqlite_store.flush(5)
    with pytest.raises(CorruptStoreError):
        run.stream("after")
    with pytest.raises(CorruptStoreError):
        sqlite_store.flush()
    assert issubclass(CorruptStoreError, runlog.errors.StoreError)
    assert not issubclass(CorruptStoreError, WriteError)


# -- item 7: @trace never breaks the app -------------------------------------------------
class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__


def _self_containing() -> list[Any]:
    x: list[Any] = []
    x.append(x)
    return x


def _deep() -> list[Any]:
    x: list[Any] = []
    for _ in range(10_000):
        x = [x]
    return x


HOSTILE = [
    pytest.param(lambda: {"\ud800": 1}, id="lone-surrogate-key"),
    pytest.param(_BadRepr, id="failing-repr"),
    pytest.param(_self_containing, id="self-containing"),
    pytest.param(_deep, id="deep"),
]


@pytest.mark.parametrize("make", HOSTILE)
def test_trace_returns_what_the_function_returns_whatever_it_is(
        store: runlog.Store, make: Any) -> None:
    value = make()

    @store.trace()
    def f(arg: Any) -> Any:
        return arg

    @store.trace()
    def gen(arg: Any) -> Iterator[Any]:
        yield arg
        yield "after"

    assert f(value) is value
    assert list(gen(value)) == [value, "after"]
    store.flush()
    runs = store.runs()
    assert all(r.end_seq is not None for r in runs)


@pytest.mark.anyio
@pytest.mark.parametrize("make", HOSTILE)
async def test_async_trace_returns_whatever_it_is(store: runlog.Store, make: Any) -> None:
    value = make()

    @store.trace()
    async def f(arg: Any) -> Any:
        return arg

    assert await f(value) is value


def test_trace_records_an_unrecordable_result_as_the_runs_error(
        store: runlog.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from runlog import codec

    real = codec.encode

    def refusing(value: Any, *args: Any, **kwargs: Any) -> bytes:
        if value == "poison":
            raise RecursionError("maximum recursion depth exceeded")
        return real(value, *args, **kwargs)

    monkeypatch.setattr(codec, "encode", refusing)

    @store.trace()
    def f() -> str:
        return "poison"

    assert f() == "poison"
    store.flush()
    (run,) = store.runs()
    assert run.status == "error"
    assert run.error is not None
    assert "could not record" in run.error.message


def test_an_exception_that_cannot_be_described_is_not_masked(store: runlog.Store) -> None:
    class Undescribable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str")

    @store.trace()
    def f() -> None:
        raise Undescribable

    with pytest.raises(Undescribable):
        f()
    with pytest.raises(Undescribable), store.run("scope"):
        raise Undescribable
    store.flush()
    assert {r.status for r in store.runs()} == {"error"}


def test_langchain_config_run_id_in_use_is_a_counted_failure_not_an_app_error(
        store: runlog.Store) -> None:
    """A LangChain ``config["run_id"]`` already in the store is refused (the first run is
    kept), counted in ``Recorder.failures``, and the chain's result is unchanged."""
    pytest.importorskip("langchain_core")
    from langchain_core.runnables import RunnableLambda
    from runlog_langchain import Recorder

    rid = "00000000-0000-4000-8000-000000000001"
    chain = RunnableLambda(lambda x: x + 1)
    first, second = Recorder(store), Recorder(store)
    assert chain.invoke(1, config={"run_id": rid, "callbacks": [first]}) == 2
    assert chain.invoke(5, config={"run_id": rid, "callbacks": [second]}) == 6
    store.flush()
    assert first.failures == 0
    assert second.failures >= 1
    assert [r.run_id for r in store.runs()] == [rid]
    assert [e.kind for e in _events(store, rid)] == ["start", "end"]
    assert store.verify().ok
