"""SQLite specifics: append-only schema, bad files, full disk, several writer processes,
a writer killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import runlog
from runlog.store.base import EventQuery, Pending, RunQuery, WriterInfo, pending_from_raw
from runlog.store.sqlite import SQLiteBackend


@pytest.mark.usefixtures("wide_sqlite_layout")  # edits its columns
def test_the_schema_refuses_update_and_delete(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with runlog.open(path) as store, store.run("r") as run:
        run.stream("x")
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE events SET raw = 'x' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events")
    conn.close()


def test_missing_foreign_and_corrupt_files_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(runlog.StoreNotFoundError, match="no runlog store"):
        runlog.open(tmp_path / "absent.db", create=False)
    assert not (tmp_path / "absent.db").exists()

    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.close()
    with pytest.raises(runlog.NotARunlogStoreError, match="customers"):
        runlog.open(other)

    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(runlog.CorruptStoreError, match="not a runlog store"):
        runlog.open(junk)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    runlog.open(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(runlog.SchemaVersionError, match="999"):
        runlog.open(path)


def test_reopen_continues_the_log(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with runlog.open(path) as store, store.run("first") as run:
        run.stream(1)
    with runlog.open(path) as store:
        with store.run("second") as run:
            run.stream(2)
        assert [e.seq for e in store.events()] == [1, 2, 3, 4, 5, 6]
        assert [r.name for r in store.runs()] == ["second", "first"]
        assert store.verify().ok


@pytest.mark.usefixtures("wide_sqlite_layout")  # edits its columns
def test_tampered_bytes_are_reported_by_verify(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with runlog.open(path) as store, store.run("r") as run:
        run.stream("original")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER events_no_update")  # what an attacker or a bug could do
    conn.execute("UPDATE events SET raw = replace(raw, 'original', 'modified') WHERE seq = 2")
    conn.close()
    with runlog.open(path) as store:
        report = store.verify()
    assert not report.ok
    assert report.first_bad_seq == 2
    assert "hash chain" in (report.first_error or "")


def test_full_disk_is_reported_by_flush_and_nothing_is_lost(tmp_path: Path) -> None:
    """SQLITE_FULL: recording goes on, flush raises WriteError, and once space is back
    every queued event is committed."""
    path = tmp_path / "runs.db"
    store = runlog.open(path)
    backend = store.backend
    assert isinstance(backend, SQLiteBackend)
    store.start_run("warm-up").end()
    store.flush()
    pages = backend._wconn.execute("PRAGMA page_count").fetchone()[0]
    backend._wconn.execute(f"PRAGMA max_page_count = {pages}")  # the "disk" is now full
    run = store.start_run("big")
    for i in range(300):
        run.stream("x" * 500 + str(i))  # never raises into the recording code
    with pytest.raises(runlog.WriteError, match="full"):
        store.flush(timeout=10)
    assert store.health["failures"] >= 1
    backend._wconn.execute("PRAGMA max_page_count = 1073741823")  # space is back
    run.end("done")
    store.flush(timeout=30)
    data = [e.data for e in store.events(run_id=run.id) if e.kind == "stream"]
    assert data == ["x" * 500 + str(i) for i in range(300)]
    assert store.verify().ok
    store.close()


WRITER = textwrap.dedent("""
    import sys, runlog
    path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = runlog.open(path)
    for r in range(5):
        with store.run(f"{tag}-{r}", tags=[tag]) as run:
            for i in range(n):
                run.stream(i)
    store.close()
""")


@pytest.mark.slow
def test_several_writer_processes_share_one_file(tmp_path: Path) -> None:
    """Three processes write at once: no 'database is locked', no loss, gap-free seq."""
    path = tmp_path / "runs.db"
    runlog.open(path).close()
    n = 400
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{k}", str(n)],
                              stderr=subprocess.PIPE, text=True) for k in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "locked" not in err
    with runlog.open(path) as store:
        events = list(store.events())
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert len(events) == 3 * 5 * (n + 2)
        per_run: dict[str, list[int]] = {}
        for e in events:
            if e.kind == "stream":
                per_run.setdefault(e.name, []).append(e.data)
        assert all(v == list(range(n)) for v in per_run.values())
        assert len(per_run) == 15
        assert store.verify().ok
        assert {r.status for r in store.runs()} == {"ok"}


KILLED = textwrap.dedent("""
    import sys, time, runlog
    store = runlog.open(sys.argv[1], lease_seconds=0.5)
    run = store.start_run("doomed")
    for i in range(50):
        run.stream(i)
    store.flush()                        # acknowledged: these 51 events must survive
    print("ACK", run.id, flush=True)
    i = 50
    while True:                          # keep writing until killed
        run.stream(i)
        i += 1
        time.sleep(0.001)
""")


@pytest.mark.slow
def test_killed_writer_keeps_acknowledged_events_and_its_run_turns_abandoned(
        tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    runlog.open(path).close()
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("ACK"), line
    run_id = line.split()[1]
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    with runlog.open(path) as store:
        data = [e.data for e in store.events(run_id=run_id) if e.kind == "stream"]
        assert data[:50] == list(range(50))
        assert data == list(range(len(data)))  # nothing reordered or half-written
        assert store.verify().ok
        deadline = time.monotonic() + 10
        while store.run_info(run_id).status == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.run_info(run_id).status == "abandoned"


def _record_in_child(store: runlog.Store, name: str) -> None:
    with store.run(name) as run:
        run.stream("from the child")


@pytest.mark.slow
def test_a_forked_child_records_through_its_own_connections(tmp_path: Path) -> None:
    import multiprocessing

    store = runlog.open(tmp_path / "runs.db")
    with store.run("parent-before"):
        pass
    proc = multiprocessing.get_context("fork").Process(target=_record_in_child,
                                                       args=(store, "child"))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    with store.run("parent-after"):
        pass
    assert sorted(r.name for r in store.runs()) == ["child", "parent-after", "parent-before"]
    assert store.verify().ok
    store.close()


def test_events_recorded_without_close_are_committed_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    script = textwrap.dedent("""
        import sys, runlog
        store = runlog.open(sys.argv[1])
        run = store.start_run("no-close")
        for i in range(1000):
            run.stream(i)
        run.end("done")   # a root's end waits anyway; the atexit flush covers the rest
        store.start_run("left-open").stream("x")
    """)
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=60)
    with runlog.open(path) as store:
        runs = {r.name: r for r in store.runs()}
        assert runs["no-close"].event_count == 1002
        assert runs["left-open"].status == "abandoned"  # its writer closed at exit
        assert runs["left-open"].event_count == 2


def _pendings(n: int, *, failing: int = 7, name: str = "r", ids: str = "run") -> list[Pending]:
    """The write records of ``n`` runs, each started and ended (every ``failing``-th
    with an error), as a recorder made them."""
    with runlog.open(":memory:") as s:
        for i in range(n):
            with s.run(f"{name}{i}", "tool", run_id=f"{ids}-{i:05d}", metadata={"n": name}) as r:
                if i % failing == 0:
                    r.end(error=ValueError(f"{name} {i}"))
        previous: dict[str, tuple[bytes | None, int]] = {}
        out = []
        for e in s.events():
            prev, count = previous.get(e.run_id, (None, 0))
            p = pending_from_raw(e.raw, prev, count + 1)
            previous[e.run_id] = (p.digest, count + 1)
            out.append(p)
        return out


@pytest.mark.parametrize("update_from", [True, False])
@pytest.mark.parametrize("duplicates", [False, True])
def test_a_batch_of_many_starts_and_ends_keeps_the_runs_table(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, update_from: bool,
        duplicates: bool) -> None:
    """One append with more starts and ends than one statement holds gives the runs
    rows the reference backend gives; a run started or ended again in the same batch
    keeps its first end (with UPDATE ... FROM and without)."""
    from runlog.store import sqlite as mod

    monkeypatch.setattr(mod, "_UPDATE_FROM", update_from and mod._UPDATE_FROM)
    batch = _pendings(1100)
    if duplicates:
        other = _pendings(10, failing=2, name="again")
        # ended again: the first end counts (a second start is refused, see below)
        batch += [p for p in other if p.run_id in ("run-00003", "run-00004")
                  and p.kind == "end"]
    writer = WriterInfo(writer_id="w")
    sqlite_backend = SQLiteBackend(tmp_path / "runs.db")
    with runlog.open(":memory:") as reference:
        assert sqlite_backend.append(batch, writer, 1) == reference.backend.append(
            batch, writer, 1) == len(batch)
        q = RunQuery(newest_first=False)
        got, expected = sqlite_backend.find_runs(q), reference.backend.find_runs(q)
    sqlite_backend.close()
    assert len(got) == 1100
    assert got == expected
    assert sum(r.status == "error" for r in got) == len(range(0, 1100, 7))
    assert all(r.end_seq == r.start_seq + 1 and r.event_count == 2 for r in got)


def test_two_connections_appending_in_turn_get_consecutive_seqs(tmp_path: Path) -> None:
    """SQLite assigns ``seq`` (the rowid) under the write lock: batches of two writers
    on one file, one of them longer than one INSERT statement holds, interleave into
    one gap-free sequence, each append returns its own last seq, and the runs rows
    point at the right events."""
    a, b = SQLiteBackend(tmp_path / "runs.db"), SQLiteBackend(tmp_path / "runs.db")
    wa, wb = WriterInfo(writer_id="a"), WriterInfo(writer_id="b")
    first, second, third = (_pendings(n, name=k, ids=k)
                            for n, k in ((3, "x"), (600, "y"), (2, "z")))
    assert a.append(first, wa, 1) == 6
    assert b.append(second, wb, None) == 6 + 1200  # two INSERT statements
    assert a.append(third, wa, None) == 1210
    rows = a.read_rows(EventQuery(after=0, limit=10_000))[0]
    assert [r[0] for r in rows] == list(range(1, 1211))
    assert [r[1] for r in rows] == [p.raw for p in (*first, *second, *third)]
    runs = a.find_runs(RunQuery(newest_first=False))
    assert [(r.start_seq, r.end_seq) for r in runs] == [(i, i + 1) for i in range(1, 1211, 2)]
    a.close()
    b.close()


def test_append_writes_the_heartbeat_only_when_given_one(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "runs.db")
    w = WriterInfo(writer_id="w")
    batches = iter([_pendings(1, ids=f"r{i}") for i in range(3)])

    def beat_at() -> list[int]:
        with backend._read_txn(raw_bytes=False) as c:
            return [r[0] for r in c.execute("SELECT heartbeat_at FROM writers")]

    backend.append(next(batches), w, 1000)
    backend.append(next(batches), w, None)
    assert beat_at() == [1000]
    backend.append(next(batches), w, 2000)
    assert beat_at() == [2000]
    backend.close()
