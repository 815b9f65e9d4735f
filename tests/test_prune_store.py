"""Store.prune on every backend (memory, SQLite compact and wide, PostgreSQL): whole
traces only, the rule (over before the cutoff, never the newest trace), the archive,
verify after a prune, and a prune racing a writer and a tail."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pg_support
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runlog
from runlog.errors import StoreError
from runlog.store.prune import PrunedSeqs, Pruner, PruneRule, seq_ranges

DAY = dt.timedelta(days=1)
NOW = dt.datetime.now(dt.UTC)
OLD = NOW - 10 * DAY
CUTOFF = NOW - 5 * DAY
KINDS = ["memory", "sqlite", "sqlite-wide", "postgres", "postgres-wide"]


def open_kind(kind: str, tmp_path: Path, name: str = "runs.db") -> runlog.Store:
    if kind == "memory":
        return runlog.open(":memory:")
    if kind.startswith("postgres"):
        from runlog.store.postgres import PostgresBackend

        pg_support.ensure_server()
        layout = "wide" if kind == "postgres-wide" else "compact"
        return runlog.Store(PostgresBackend(pg_support.store_url(str(tmp_path / name)),
                                            layout=layout))
    if kind == "sqlite-wide":
        from runlog.store.sqlite import SQLiteBackend

        return runlog.Store(SQLiteBackend(tmp_path / name, layout="wide"))
    return runlog.open(tmp_path / name)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pstore(kind: str, tmp_path: Path) -> Iterator[runlog.Store]:
    s = open_kind(kind, tmp_path)
    try:
        yield s
    finally:
        s.close()


def record(store: runlog.Store, name: str, when: dt.datetime, *, tokens: int = 2,
           tags: list[str] | None = None, end: bool = True,
           child_end: dt.datetime | None = None) -> str:
    """One trace: a root with a child, ``tokens`` streamed chunks each, at ``when``."""
    root = store.start_run(name, tags=tags or [], time=when)
    child = root.start_child("step", time=when)
    for i in range(tokens):
        child.stream(f"t{i}", time=when)
        root.stream(f"r{i}", time=when)
    child.end("done", time=child_end or when)
    if end:
        root.end("ok", time=max(when, child_end or when))
    store.flush()
    return root.id


def contents(store: runlog.Store) -> list[tuple[int, str, bytes]]:
    return [(e.seq, e.trace_id, e.raw) for e in store.events()]


def test_prune_removes_whole_old_traces_and_keeps_the_rest(pstore: runlog.Store) -> None:
    old = [record(pstore, f"old{i}", OLD) for i in range(3)]
    late_child = record(pstore, "late", OLD, child_end=NOW - DAY)  # a run ended after
    running = pstore.start_run("running", time=OLD)  # open, its writer alive
    running.stream("x", time=OLD)
    pstore.flush()
    fresh = record(pstore, "fresh", NOW - DAY)
    before = contents(pstore)
    report = pstore.prune(CUTOFF)
    assert sorted(report.trace_ids) == sorted(old)
    assert report.traces == 3
    assert report.runs == 6
    assert report.events == 3 * 8
    after = contents(pstore)
    assert after == [e for e in before if e[1] not in old]  # order, seqs, bytes kept
    assert {e[1] for e in after} == {late_child, running.trace_id, fresh}
    assert all(pstore.trace_runs(t) == [] for t in old)
    report2 = pstore.verify()
    assert report2.ok, report2.first_error
    assert report2.pruned_events == 24
    running.end(time=OLD)
    pstore.flush()


def test_never_the_newest_trace(pstore: runlog.Store) -> None:
    a = record(pstore, "a", OLD)
    b = record(pstore, "b", OLD)
    report = pstore.prune(NOW)
    assert report.trace_ids == (a,)  # b holds the last event and the last run
    report = pstore.prune(NOW, trace_id=b)
    assert report.traces == 0
    c = record(pstore, "c", OLD)
    assert pstore.prune(NOW).trace_ids == (b,)
    assert [r.trace_id for r in pstore.runs()] == [c, c]
    new = record(pstore, "d", NOW)
    assert new  # numbering goes on after the largest seq ever given
    seqs = [e.seq for e in pstore.events()]
    assert seqs == sorted(seqs)
    assert seqs[0] == 17
    assert pstore.verify().ok


def test_trace_and_tag_rules(pstore: runlog.Store) -> None:
    a = record(pstore, "a", OLD, tags=["eval"])
    b = record(pstore, "b", OLD)
    c = record(pstore, "c", OLD, tags=["eval", "x"])
    record(pstore, "newest", NOW)
    assert pstore.prune(CUTOFF, trace_id=b).trace_ids == (b,)
    assert pstore.prune(CUTOFF, tag="nope").traces == 0
    dry = pstore.prune(CUTOFF, tag="eval", dry_run=True)
    assert dry.dry_run
    assert sorted(dry.trace_ids) == sorted([a, c])
    assert dry.events == 16
    assert len(list(pstore.events())) == 24
    assert sorted(pstore.prune(CUTOFF, tag="eval").trace_ids) == sorted([a, c])
    assert pstore.verify().ok


def test_an_abandoned_run_goes_once_its_last_sign_of_life_is_old(
        kind: str, tmp_path: Path) -> None:
    if kind == "memory":
        pytest.skip("a memory store dies with its only writer")
    first = open_kind(kind, tmp_path)
    left = first.start_run("left open", time=OLD)
    left.stream("x", time=OLD)
    first.flush()
    first.writer.close()  # the process's writer is gone: the run is abandoned
    first.backend.close()
    store = open_kind(kind, tmp_path)
    try:
        record(store, "newest", NOW)
        assert store.run_info(left.id).status == "abandoned"
        assert store.prune(OLD).traces == 0  # its last event is at OLD, not before
        assert store.prune(CUTOFF).trace_ids == (left.trace_id,)
        assert store.verify().ok
    finally:
        store.close()


def test_a_trace_that_changed_since_it_was_chosen_is_kept(pstore: runlog.Store) -> None:
    a = record(pstore, "a", OLD)
    record(pstore, "newest", NOW)
    by = Pruner(operation="test")
    rule = PruneRule(runlog.events.datetime_to_micros(CUTOFF))
    batch = pstore.backend.prune_traces({a: 3}, rule, by)  # it has 8 events
    assert batch.trace_ids == ()
    assert batch.kept == (a,)
    assert len(list(pstore.events(trace_id=a))) == 8
    batch = pstore.backend.prune_traces({a: 8}, rule, by)
    assert batch.trace_ids == (a,)
    assert batch.events == 8
    assert batch.seqs == ((1, 8),)
    record_ = pstore.prunes()[-1]
    assert (record_.operation, record_.traces, record_.events) == ("test", 1, 8)
    assert record_.user
    assert record_.host
    assert record_.pid


def test_cursor_inside_a_pruned_range_resumes_at_the_next_survivor(
        pstore: runlog.Store) -> None:
    a = record(pstore, "a", OLD)
    keep = record(pstore, "keep", NOW)
    record(pstore, "newest", NOW)
    first_kept = next(e.seq for e in pstore.events(trace_id=keep))
    pstore.prune(CUTOFF)
    assert not list(pstore.events(trace_id=a))
    for cursor in (0, 3, first_kept - 1):
        assert next(iter(pstore.events(after=cursor))).seq == first_kept
    with pstore.tail(after=4, idle_timeout=0.2) as t:
        seen = [item.seq for item in t if isinstance(item, runlog.Event)]
    assert seen == [e.seq for e in pstore.events()]


def test_archive_round_trips_through_import(pstore: runlog.Store, tmp_path: Path) -> None:
    old = [record(pstore, f"old{i}", OLD, tokens=i + 1) for i in range(3)]
    record(pstore, "newest", NOW)
    raws = {e.raw for e in pstore.events() if e.trace_id in old}
    archive = tmp_path / "old.jsonl"
    report = pstore.prune(CUTOFF, archive=archive)
    assert report.archive == str(archive)
    assert report.archived_events == len(raws)
    assert report.events == len(raws)
    assert not Path(f"{archive}.partial").exists()
    assert runlog.exporters.verify_jsonl(archive).ok
    with runlog.open(":memory:") as fresh:
        runlog.import_jsonl(fresh, archive)
        assert {e.raw for e in fresh.events()} == raws
        assert fresh.verify().ok
    # the same store takes its traces back; verify still accepts the pruned seqs
    runlog.import_jsonl(pstore, archive)
    assert {e.raw for e in pstore.events() if e.trace_id in old} == raws
    assert pstore.verify().ok
    with pytest.raises(StoreError, match="exists"):
        pstore.prune(NOW, archive=archive)


def test_nothing_is_removed_when_the_archive_cannot_be_written(
        pstore: runlog.Store, tmp_path: Path) -> None:
    record(pstore, "a", OLD)
    record(pstore, "newest", NOW)
    with pytest.raises(OSError):
        pstore.prune(CUTOFF, archive=tmp_path / "missing-dir" / "a.jsonl")
    assert len(list(pstore.events())) == 16
    assert pstore.prunes() == []


def test_a_cutoff_in_the_future_is_refused(pstore: runlog.Store) -> None:
    with pytest.raises(StoreError, match="future"):
        pstore.prune(NOW + DAY)


def test_stats_count_what_is_stored(pstore: runlog.Store) -> None:
    for i in range(3):
        record(pstore, f"t{i}", OLD + i * DAY, tokens=i + 1)
    record(pstore, "newest", NOW)
    s = pstore.stats(top=2)
    assert (s.events, s.runs, s.traces) == (len(list(pstore.events())), 8, 4)
    assert sum(t.events for t in s.by_type) == s.events
    assert {t.run_type for t in s.by_type} == {"chain"}
    assert sum(d.events for d in s.per_day) == s.events
    assert len(s.per_day) == 4
    assert abs(sum(d.bytes for d in s.per_day) - s.events_bytes) <= len(s.per_day)
    assert len(s.top_traces) == 2
    assert s.top_traces[0].events >= s.top_traces[1].events
    assert s.top_traces[0].name == "t2"
    assert s.bytes_on_disk >= s.events_bytes > 0
    assert s.oldest_us == runlog.events.datetime_to_micros(OLD)
    assert s.bytes_per_day > 0
    pstore.prune(CUTOFF)
    after = pstore.stats()
    assert after.events < s.events
    assert after.prunes == 1
    assert after.pruned_events == s.events - after.events
    assert after.to_dict()["oldest"] is not None


def test_the_append_only_triggers_stay(kind: str, tmp_path: Path) -> None:
    if kind == "memory":
        pytest.skip("no SQL")
    store = open_kind(kind, tmp_path)
    try:
        record(store, "a", OLD)
        record(store, "b", NOW)
        store.prune(CUTOFF)
        if kind.startswith("sqlite"):
            conn = sqlite3.connect(tmp_path / "runs.db")
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute("DELETE FROM events")
            conn.close()
        else:
            import psycopg

            from runlog.store.postgres import PostgresBackend

            backend = store.backend
            assert isinstance(backend, PostgresBackend)
            with backend._conn() as conn, pytest.raises(psycopg.errors.RaiseException):
                conn.execute("DELETE FROM events")
            with backend._conn() as conn:  # the setting alone does not allow an UPDATE
                conn.execute("BEGIN")
                conn.execute("SET LOCAL runlog.prune = 'on'")
                with pytest.raises(psycopg.errors.RaiseException):
                    conn.execute("UPDATE events SET time = time")  # a column of both layouts
                conn.execute("ROLLBACK")
        assert len(list(store.events())) == 8
    finally:
        store.close()


def test_verify_still_finds_gaps_no_prune_made(tmp_path: Path) -> None:
    store = runlog.open(tmp_path / "runs.db")
    try:
        record(store, "a", OLD)
        b = record(store, "b", OLD)
        record(store, "c", NOW)
        store.prune(CUTOFF, trace_id=b)
        assert store.verify().ok
        conn = sqlite3.connect(tmp_path / "runs.db")
        conn.execute("UPDATE prunes SET seqs = '[[9,17]]'")  # claims a stored seq
        conn.commit()
        report = store.verify()
        assert not report.ok
        assert report.first_error == (
            "seq 17 is stored, but a recorded prune removed it")
        conn.execute("UPDATE prunes SET seqs = '[[9,16]]'")
        conn.commit()
        assert store.verify().ok
        conn.execute("DROP TRIGGER events_no_delete")
        conn.execute("DELETE FROM events WHERE seq = 20")  # behind the triggers' back
        conn.commit()
        conn.close()
        report = store.verify()
        assert not report.ok
        assert report.first_error == (
            "seq jumps from 19 to 21 (not a range a prune removed)")
    finally:
        store.close()


def test_sqlite_gives_the_space_back(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = runlog.open(path)
    try:
        for i in range(20):
            record(store, f"t{i}", OLD, tokens=300)
        record(store, "newest", NOW)
        store.backend.checkpoint()  # type: ignore[attr-defined]
        size = path.stat().st_size
        backend = store.backend
        txns: list[int] = []
        plain = backend._write_txn  # type: ignore[attr-defined]

        @contextlib.contextmanager
        def counted() -> Iterator[sqlite3.Connection]:
            with plain() as c:
                yield c
            txns.append(c.execute("PRAGMA freelist_count").fetchone()[0])

        backend._write_txn = counted  # type: ignore[attr-defined]
        report = store.prune(CUTOFF, batch_events=100_000)
        assert report.traces == 20
        assert report.reclaimed > 0
        # one removal, then steps of at most 256 pages (1 MiB), each its own transaction
        pages = report.reclaimed // 4096
        assert len(txns) - report.batches <= pages // 256 + 2
        assert txns[-1] == 0
        store.backend.checkpoint()  # type: ignore[attr-defined]
        assert path.stat().st_size < size / 2
    finally:
        store.close()


def test_sqlite_store_made_without_incremental_vacuum(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA auto_vacuum = NONE")
    conn.execute("CREATE TABLE placeholder (x)")  # fixes the mode, then runlog creates
    conn.execute("DROP TABLE placeholder")
    conn.close()
    path.unlink()
    store = runlog.open(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA auto_vacuum = NONE")  # no effect after creation: 2 stays
    conn.close()
    try:
        record(store, "a", OLD, tokens=500)
        record(store, "b", NOW)
        store.backend._wconn.execute("PRAGMA auto_vacuum = NONE")  # type: ignore[attr-defined]
        store.backend._wconn.execute("VACUUM")  # type: ignore[attr-defined]
        assert store.backend._wconn.execute(  # type: ignore[attr-defined]
            "PRAGMA auto_vacuum").fetchone()[0] == 0
        report = store.prune(CUTOFF)
        assert report.traces == 1
        assert report.reclaimed == 0
        record(store, "c", NOW)
        assert store.backend._wconn.execute(  # type: ignore[attr-defined]
            "PRAGMA freelist_count").fetchone()[0] > 0
        store.backend.checkpoint()  # type: ignore[attr-defined]
        size = path.stat().st_size
        store.prune(CUTOFF, vacuum=True)  # nothing more to remove: VACUUM only
        store.backend.checkpoint()  # type: ignore[attr-defined]
        assert path.stat().st_size < size
        assert store.verify().ok
    finally:
        store.close()


def test_seq_ranges_and_pruned_seqs() -> None:
    assert seq_ranges([5, 1, 2, 3, 7, 8]) == ((1, 3), (5, 5), (7, 8))
    assert seq_ranges([]) == ()
    from runlog.store.prune import PruneRecord

    def rec(*seqs: tuple[int, int]) -> PruneRecord:
        return PruneRecord(1, "op", 0, "u", "h", 1, "{}", 1, 1, 1, seqs, ("t",), None)

    p = PrunedSeqs([rec((1, 3), (8, 9)), rec((4, 5))])
    assert p.covers(1, 5)
    assert p.covers(8, 9)
    assert not p.covers(5, 6)
    assert 6 not in p
    assert 2 in p
    assert p.events == 7
    assert len(p) == 2


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 3), st.booleans()),
                     min_size=1, max_size=8),
       cut=st.integers(0, 20))
def test_prune_removes_exactly_the_eligible_traces(
        plan: list[tuple[int, int, bool]], cut: int) -> None:
    """Any mix of traces (age in days, tokens, ended or not): a prune removes exactly the
    traces over before the cutoff (not the newest), whole, and everything else stays."""
    check_plan(runlog.open(":memory:"), plan, cut)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 3), st.booleans()),
                     min_size=1, max_size=6),
       cut=st.integers(0, 20), wide=st.booleans())
def test_sqlite_prunes_exactly_the_eligible_traces(
        plan: list[tuple[int, int, bool]], cut: int, wide: bool) -> None:
    import tempfile

    from runlog.store.sqlite import SQLiteBackend

    with tempfile.TemporaryDirectory() as tmp:
        check_plan(runlog.Store(SQLiteBackend(Path(tmp) / "runs.db",
                                              layout="wide" if wide else "compact")),
                   plan, cut)


def check_plan(store: runlog.Store, plan: list[tuple[int, int, bool]], cut: int) -> None:
    try:
        traces: list[tuple[str, bool]] = []
        for age, tokens, ended in plan:
            when = NOW - dt.timedelta(days=age, hours=1)
            traces.append((record(store, "t", when, tokens=tokens, end=ended),
                           ended and age >= cut))
        before = contents(store)
        newest = traces[-1][0]
        report = store.prune(NOW - dt.timedelta(days=cut))
        want = {t for t, over in traces if over and t != newest}
        assert set(report.trace_ids) == want
        assert contents(store) == [e for e in before if e[1] not in want]
        assert store.verify().ok
    finally:
        store.close()


def test_a_prune_racing_a_writer_and_a_tail(kind: str, tmp_path: Path) -> None:
    """While another store object appends new traces and a tail follows from seq 0, a
    prune removes the old traces in many small batches: the tail's seqs only grow,
    never repeat, and include every event that survives; the writer loses nothing."""
    store = open_kind(kind, tmp_path)
    writer = store if kind == "memory" else open_kind(kind, tmp_path)
    try:
        old = [record(store, f"old{i}", OLD, tokens=3) for i in range(30)]
        stop = threading.Event()
        written: list[str] = [record(writer, "new", NOW)]  # the newest trace stays

        def write() -> None:
            while not stop.is_set() or len(written) < 5:
                written.append(record(writer, "new", NOW, tokens=2))

        seen: list[int] = []
        with store.tail(after=0, idle_timeout=1.0, poll_interval=0.01) as tail:
            thread = threading.Thread(target=write)
            thread.start()
            try:
                report = store.prune(CUTOFF, batch_events=8)
            finally:
                stop.set()
                thread.join()
            writer.flush()
            for item in tail:
                if isinstance(item, runlog.Event):
                    seen.append(item.seq)
        assert report.traces == 30
        assert report.batches >= 10
        assert sorted(report.trace_ids) == sorted(old)
        assert seen == sorted(set(seen))  # never repeated, never out of order
        surviving = [e.seq for e in store.events()]
        assert set(surviving) <= set(seen)  # never skipped a survivor
        assert {e.trace_id for e in store.events()} == set(written)
        assert all(len(store.trace_runs(t)) == 2 for t in written)
        v = store.verify()
        assert v.ok, v.first_error
    finally:
        if writer is not store:
            writer.close()
        store.close()


WRITER = """
import sys, runlog
store = runlog.open(sys.argv[1])
for i in range(int(sys.argv[2])):
    with store.run("proc", inputs={"i": i}) as run:
        for k in range(5):
            run.stream(k)
store.close()
print("done")
"""


@pytest.mark.parametrize("layout", ["compact", "wide"])
def test_a_prune_racing_another_process(layout: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite: another process appends while this one prunes in small batches (each
    drops and re-creates the delete trigger): the writer loses nothing, and it never
    deletes anything either (its connection only ever sees the trigger)."""
    import subprocess
    import sys

    monkeypatch.setenv("RUNLOG_SQLITE_LAYOUT", layout)
    path = tmp_path / "runs.db"
    store = runlog.open(path)
    try:
        old = [record(store, f"old{i}", OLD, tokens=3) for i in range(60)]
        record(store, "newest", NOW)
        start = store.last_seq()
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "400"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while store.last_seq() == start and proc.poll() is None:  # it is writing now
            time.sleep(0.005)
        report = store.prune(CUTOFF, batch_events=10)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == "done"
        assert sorted(report.trace_ids) == sorted(old)
        assert report.batches == 60
        assert len(store.runs(name="proc")) == 400
        assert all(r.event_count == 7 for r in store.runs(name="proc"))
        v = store.verify()
        assert v.ok, v.first_error
        assert v.pruned_events == 60 * 10
        conn = sqlite3.connect(path)
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master "
                                            "WHERE type = 'trigger'")}
        conn.close()
        assert {"events_no_update", "events_no_delete"} <= names
    finally:
        store.close()
