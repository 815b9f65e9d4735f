"""PostgreSQL specifics: seq under concurrent writer processes, the bigserial failure it
avoids, bytes, SQL filters as a superset of the exact predicate, server-clock leases,
LISTEN/NOTIFY wake-ups surviving a dropped connection, migrations and copy.

The contract every backend shares runs from tests/test_store_contract.py through the
``store`` fixture; this file only covers what is PostgreSQL's own.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pg_support
import psycopg
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

import runlog
from runlog import ANY, Filter
from runlog.cli import cli
from runlog.errors import SchemaVersionError, StoreError
from runlog.store.base import EventQuery, WriterInfo
from runlog.store.copy import copy_store
from runlog.store.migrations import Migration, migrate
from runlog.store.postgres import PostgresBackend, filter_sql

pytestmark = pytest.mark.postgres


@pytest.fixture
def url() -> str:
    return pg_support.store_url()


@pytest.fixture
def pg(url: str) -> Iterator[runlog.Store]:
    s = runlog.open(url)
    try:
        yield s
    finally:
        s.close()


def _backend(store: runlog.Store) -> PostgresBackend:
    assert isinstance(store.backend, PostgresBackend)
    return store.backend


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(pg_support.libpq_url(), autocommit=True)


# ------------------------------------------------------------------ seq ordering

WRITER = textwrap.dedent("""
    import sys, runlog
    url, tag, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = runlog.open(url)
    for i in range(runs):
        with store.run(f"{tag}-{i}", tags=[tag]) as run:
            for t in range(5):
                run.token(str(t))
        store.flush()  # many small commits, interleaving with the other writers
    store.close()
""")


def test_seq_is_gap_free_and_commit_ordered_under_writer_processes(url: str) -> None:
    """4 writer processes append while 2 readers follow with cursors.

    Every page a reader gets must continue its cursor exactly (no skip), and its
    high-water mark must never run ahead of what it returned (a reader that saw N
    never later meets a new event below N).
    """
    runlog.open(url).close()  # create the schema once, before the race
    writers, runs = 4, 8
    expected = writers * runs * 7
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, f"w{i}", str(runs)])
             for i in range(writers)]
    problems: list[str] = []
    seen: list[list[int]] = [[], []]

    def follow(k: int) -> None:
        backend = PostgresBackend(url, create=False)
        cursor = 0
        try:
            while cursor < expected:
                page, high = backend.read(EventQuery(after=cursor, limit=17))
                seqs = [e.seq for e in page]
                if seqs != list(range(cursor + 1, cursor + 1 + len(seqs))):
                    problems.append(f"reader {k}: after {cursor} got {seqs}")
                    return
                if len(page) < 17 and high != (seqs[-1] if seqs else cursor):
                    problems.append(f"reader {k}: high {high} beyond page {seqs} at {cursor}")
                    return
                seen[k].extend(seqs)
                cursor = high
                if not seqs:
                    time.sleep(0.002)  # leave the CPUs to the writers between polls
                if any(p.poll() not in (None, 0) for p in procs):
                    problems.append("a writer process failed")
                    return
        finally:
            backend.close()

    readers = [threading.Thread(target=follow, args=(k,)) for k in range(2)]
    for t in readers:
        t.start()
    for p in procs:
        assert p.wait(timeout=120) == 0
    for t in readers:
        t.join(timeout=120)
    assert not problems, problems
    assert seen[0] == seen[1] == list(range(1, expected + 1))
    with runlog.open(url, create=False) as store:
        events = list(store.events())
        assert [e.seq for e in events] == list(range(1, expected + 1))
        assert store.verify().ok
        for i in range(writers):  # each writer's own events kept their order
            mine = [e.name for e in events if e.name.startswith(f"w{i}-") and e.kind == "start"]
            assert mine == [f"w{i}-{j}" for j in range(runs)]


def test_bigserial_lets_readers_skip_and_the_counter_row_does_not(url: str) -> None:
    """Why not ``bigserial``: two interleaved transactions, step by step, no timing."""
    runlog.open(url).close()
    schema = url.rsplit("schema=", 1)[1]
    with _admin() as admin:
        admin.execute(f"SET search_path = {schema}")  # type: ignore[arg-type]
        admin.execute("CREATE TABLE serial_log (seq bigserial PRIMARY KEY, v text)")
    opts = f"-c search_path={schema}"
    with psycopg.connect(pg_support.libpq_url(), options=opts) as t1, \
            psycopg.connect(pg_support.libpq_url(), options=opts) as t2, \
            psycopg.connect(pg_support.libpq_url(), options=opts, autocommit=True) as reader:
        t1.execute("INSERT INTO serial_log (v) VALUES ('first')")   # takes seq 1
        t2.execute("INSERT INTO serial_log (v) VALUES ('second')")  # takes seq 2
        t2.commit()
        seen = [r[0] for r in reader.execute("SELECT seq FROM serial_log WHERE seq > 0")]
        assert seen == [2]  # a tailer now sets its cursor to 2 ...
        t1.commit()
        late = [r[0] for r in reader.execute("SELECT seq FROM serial_log WHERE seq > 2")]
        assert late == []  # ... and never sees seq 1, committed after it
        assert [r[0] for r in reader.execute("SELECT seq FROM serial_log")] == [1, 2]

        # The counter row: a second writer cannot take seqs while the first holds
        # uncommitted ones (it would wait; lock_timeout makes the wait observable).
        t1.execute("UPDATE seq_counter SET last = last + 1 WHERE id = 1 RETURNING last")
        t2.execute("SET lock_timeout = '50ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            t2.execute("UPDATE seq_counter SET last = last + 1 WHERE id = 1")
        t2.rollback()
        t1.rollback()  # a rolled-back batch gives its numbers back: no gap
        row = reader.execute("SELECT last FROM seq_counter").fetchone()
        assert row is not None
        assert row[0] == 0


# ------------------------------------------------------------------ bytes, schema

def test_bytes_with_escaped_nul_round_trip_and_filter(pg: runlog.Store) -> None:
    """JSON escapes U+0000, so TEXT holds every envelope; JSONB refuses it, so such a
    run's filter columns stay NULL and the exact predicate decides."""
    with pg.run("nul\x00name", tags=["a\x00b", "plain"], metadata={"k": "v\x00"},
                inputs={"s": "x\x00y", "b": b"\x00\xff"}) as run:
        run.stream("\x00")
    events = list(pg.events())
    assert all(b"\x00" not in e.raw for e in events)
    assert events[0].data == {"s": "x\x00y", "b": b"\x00\xff"}
    assert [e.raw for e in pg.replay(events[0].run_id)] == [e.raw for e in events]
    assert len(list(pg.events(filter=Filter(include_tags=["a\x00b"])))) == 3
    assert len(list(pg.events(filter=Filter(include_tags=["plain"])))) == 3
    assert list(pg.events(filter=Filter(exclude_tags=["a\x00b"]))) == []
    assert len(list(pg.events(filter=Filter(include_metadata={"k": "v\x00"})))) == 3
    assert [r.name for r in pg.runs(filter=Filter(include_tags=["plain"]))] == ["nul\x00name"]


@given(a=st.text(alphabet=st.sampled_from("a0\x00\ufffe\\%_")),
       b=st.text(alphabet=st.sampled_from("a0\x00\ufffe\\%_")))
def test_text_column_mapping_is_injective_and_reversible(a: str, b: str) -> None:
    """Names and ids in TEXT columns: no NUL ever reaches PostgreSQL, equality is kept
    both ways (so filters and lookups stay exact), and reads get the original back."""
    from runlog.store.postgres import dec, enc

    assert "\x00" not in enc(a)
    assert dec(enc(a)) == a
    assert (enc(a) == enc(b)) == (a == b)
    if "\x00" not in a and "\ufffe" not in a:
        assert enc(a) == a


def test_the_database_refuses_update_delete_truncate(pg: runlog.Store) -> None:
    with pg.run("r") as run:
        run.stream("x")
    schema = pg.backend.url.rsplit("schema=", 1)[1]
    with _admin() as admin:
        admin.execute(f"SET search_path = {schema}")  # type: ignore[arg-type]
        for stmt in ("UPDATE events SET raw = 'x'", "DELETE FROM events",
                     "TRUNCATE events"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                admin.execute(stmt)  # type: ignore[arg-type]


def test_clear_errors_for_unreachable_foreign_absent_and_newer(url: str) -> None:
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL"):
        runlog.open("postgresql://postgres@127.0.0.1:1/test")
    with pytest.raises(StoreError, match="psycopg"):
        runlog.open("postgresql+asyncpg://postgres@127.0.0.1/test")
    with pytest.raises(StoreError, match="plain identifier"):
        runlog.open(pg_support.base_url() + "?schema=bad;name")
    with pytest.raises(runlog.StoreNotFoundError, match="does not exist"):
        runlog.open(url, create=False)
    schema = url.rsplit("schema=", 1)[1]
    with _admin() as admin:
        admin.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
        admin.execute(f"CREATE TABLE {schema}.events (id int)")  # type: ignore[arg-type]
    with pytest.raises(runlog.NotARunlogStoreError, match="own schema"):
        runlog.open(url)
    other = pg_support.store_url()
    runlog.open(other).close()
    with _admin() as admin:
        admin.execute(f"UPDATE {other.rsplit('=', 1)[1]}.meta SET value = '999' "  # type: ignore[arg-type]
                      "WHERE key = 'schema_version'")
    with pytest.raises(SchemaVersionError, match="999"):
        runlog.open(other)


def test_concurrent_first_opens_create_one_store(url: str) -> None:
    """Eight clients opening a store that does not exist yet: one creates it (under an
    advisory lock), the others open it; nobody fails on a half-made schema."""
    errors: list[BaseException] = []

    def open_close() -> None:
        try:
            runlog.open(url).close()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=open_close) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with runlog.open(url, create=False) as s:
        assert s.last_seq() == 0


def test_search_path_in_options_works_like_schema(url: str) -> None:
    schema = url.rsplit("schema=", 1)[1]
    with runlog.open(url) as s, s.run("r") as run:
        run.stream(1)
    plain = pg_support.base_url()
    with_options = f"{plain}{'&' if '?' in plain else '?'}options=-csearch_path%3D{schema}"
    with runlog.open(with_options, create=False) as s:
        assert [e.kind for e in s.events()] == ["start", "stream", "end"]
        assert _backend(s).channel == f"runlog:{schema}"


# ------------------------------------------------------------------ filters

TAGS = ["a", "b", "c", "a\x00"]
META_VALUES: list[Any] = ["ann", "bob", 1, True, 1.0, None, ["x"], {"y": 1}, "v\x00"]


@pytest.fixture(scope="module")
def filter_store() -> Iterator[runlog.Store]:
    """One store with runs of every shape the filters distinguish (built once)."""
    s = runlog.open(pg_support.store_url())
    k = 0
    for name in ["alpha", "beta"]:
        for rtype in ["chain", "llm", "tool"]:
            for i, tag_set in enumerate([[], ["a"], ["b", "c"], ["a\x00", "c"]]):
                meta: dict[str, Any] = {}
                if i:
                    meta["user"] = META_VALUES[k % len(META_VALUES)]
                if k % 3 == 0:
                    meta["team"] = META_VALUES[(k * 5) % len(META_VALUES)]
                k += 1
                with s.run(name, rtype, tags=tag_set, metadata=meta) as run:
                    run.stream(k)
    yield s
    s.close()


names = st.lists(st.sampled_from(["alpha", "beta", "gamma"]), max_size=2)
types = st.lists(st.sampled_from(["chain", "llm", "tool"]), max_size=2)
tags = st.lists(st.sampled_from(TAGS), max_size=2)
metas = st.dictionaries(st.sampled_from(["user", "team", "none"]),
                        st.sampled_from([ANY, *META_VALUES]), max_size=2)


@st.composite
def filters(draw: st.DrawFn) -> Filter:
    kw: dict[str, Any] = {}
    for key, strat in [("include_names", names), ("include_types", types),
                       ("include_tags", tags), ("exclude_names", names),
                       ("exclude_types", types), ("exclude_tags", tags),
                       ("include_metadata", metas), ("exclude_metadata", metas)]:
        if draw(st.booleans()):
            kw[key] = draw(strat)
    return Filter(**kw)


@given(f=filters())
def test_sql_filter_is_a_superset_and_the_store_is_exact(filter_store: runlog.Store,
                                                         f: Filter) -> None:
    everything = list(filter_store.events())
    exact = [e.seq for e in everything if f.matches(e)]
    assert [e.seq for e in filter_store.events(filter=f)] == exact
    if not f.is_empty:
        page, _ = filter_store.backend.read(EventQuery(filter=f, limit=10_000))
        assert set(exact) <= {e.seq for e in page}
    runs = [r.run_id for r in filter_store.runs(filter=f)]
    assert runs == [r.run_id for r in filter_store.runs()
                    if f.matches_run(r.name, r.run_type, r.tags, r.metadata)]


def test_filters_are_bound_parameters() -> None:
    sql, params = filter_sql(Filter(include_names=["x'; DROP TABLE events; --"],
                                    include_metadata={"k'": "v'"}))
    assert "DROP" not in sql
    assert "k'" not in sql
    assert "x'; DROP TABLE events; --" in params


# ------------------------------------------------------------------ leases

def test_leases_use_the_server_clock(pg: runlog.Store) -> None:
    """The writer's own clock is ignored: a heartbeat dated 1970 still keeps the run
    alive, and a lease that expired on the server's clock makes it abandoned."""
    backend = _backend(pg)
    run = pg.start_run("open")
    pg.flush()
    backend.heartbeat(pg.writer.info, now_us=0)
    assert pg.runs()[0].status == "running"
    short = WriterInfo(writer_id="w-short", lease_us=1)
    with backend._conn() as conn:
        conn.execute("UPDATE runs SET writer_id = 'w-short'")
    backend.heartbeat(short, now_us=10**18)  # a far-future client clock changes nothing
    assert pg.runs()[0].status == "abandoned"
    run.end("done")
    pg.flush()
    assert pg.runs()[0].status == "ok"


def test_a_dropped_writer_connection_loses_and_duplicates_nothing(pg: runlog.Store) -> None:
    """The server closes the writer's connection (restart, proxy timeout): the next
    commit reconnects, checks whether the batch already committed, and carries on."""
    backend = _backend(pg)
    with pg.run("before") as run:
        run.stream(1)
    pid_row = backend._writer_conn().execute("SELECT pg_backend_pid()").fetchone()
    assert pid_row is not None
    with _admin() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid_row[0],))
    with pg.run("after") as run:
        run.stream(2)
    pg.flush()
    assert pg.writer.failures == 0
    assert [(e.seq, e.name) for e in pg.events()] == [
        (1, "before"), (2, "before"), (3, "before"), (4, "after"), (5, "after"), (6, "after")]

    # A batch whose commit was hidden by a dropped connection is not appended twice.
    sample = list(pg.events())[3:]
    from runlog.store.base import pending_from_raw

    prev: bytes | None = None
    again = []
    for i, e in enumerate(sample, 1):
        p = pending_from_raw(e.raw, prev, i)
        prev = p.digest
        again.append(p)
    backend._in_doubt = again[0].digest.hex()
    assert backend.append(again, pg.writer.info, 0) == 6
    assert pg.last_seq() == 6
    assert pg.verify().ok


@pytest.mark.parametrize("insert", ["unnest", "copy", "auto"])
def test_every_insert_method_appends_the_same_log(insert: str, url: str) -> None:
    """One statement, COPY, and the size switch between them: same seqs, bytes, runs."""
    from runlog.store.base import pending_from_raw

    with runlog.open(":memory:") as mem:
        a = mem.start_run("a")
        with mem.run("b", tags=["t"]) as b:
            for i in range(300):
                b.token(str(i))
        a.end("done")
        source = list(mem.events(digests=True))
        expected = {r.name: (r.status, r.event_count, r.start_seq, r.end_seq)
                    for r in mem.runs()}
    prev: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    pendings = []
    for e in source:
        counts[e.run_id] = counts.get(e.run_id, 0) + 1
        p = pending_from_raw(e.raw, prev.get(e.run_id), counts[e.run_id])
        prev[e.run_id] = p.digest
        pendings.append(p)
    backend = PostgresBackend(url, insert=insert)
    writer = WriterInfo(writer_id="w")
    try:
        # a's start alone; then b whole (start, 300 tokens, end) with a's end: runs that
        # start and end in one batch, and a run ending in a later batch
        assert backend.append(pendings[:1], writer, 0) == 1
        assert backend.append(pendings[1:], writer, 0) == len(source)
        page, high = backend.read(EventQuery(limit=10_000, digests=True))
        assert high == len(source)
        assert [(e.seq, e.raw, e.digest) for e in page] == [
            (e.seq, e.raw, e.digest) for e in source]
        got = {r.name: (r.status, r.event_count, r.start_seq, r.end_seq)
               for r in backend.find_runs(runlog.store.base.RunQuery())}
        assert got == expected
    finally:
        backend.close()


# ------------------------------------------------------------------ wake-ups

def test_notify_wakes_a_waiter_and_a_dropped_connection_loses_nothing(
        pg: runlog.Store) -> None:
    backend = _backend(pg)
    waiter = backend.change_waiter()
    try:
        with pg.run("one") as run:
            run.stream(1)
        waiter.wait(timeout=30)  # queued since the waiter was made: returns at once
        assert waiter.notifications == 1  # type: ignore[attr-defined]

        with _admin() as admin:  # the LISTEN connection dies (server restart, proxy)
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE query = %s AND pid != pg_backend_pid()",
                          (f'LISTEN "{backend.channel}"',))
        with pg.run("two") as run:  # committed while nobody listens
            run.stream(2)
        cursor = 3
        for _ in range(3):  # wakes (drop noticed, then relisten) without the NOTIFY
            waiter.wait(timeout=30)
            if waiter.reconnects:  # type: ignore[attr-defined]
                break
        assert waiter.reconnects == 1  # type: ignore[attr-defined]
        assert [e.name for e in pg.events(after=cursor)] == ["two", "two", "two"]

        before = waiter.notifications  # type: ignore[attr-defined]
        with pg.run("three") as run:
            run.stream(3)
        waiter.wait(timeout=30)
        assert waiter.notifications == before + 1  # type: ignore[attr-defined]
    finally:
        waiter.close()


@pytest.mark.anyio
async def test_await_change_wakes_without_a_thread(pg: runlog.Store) -> None:
    backend = _backend(pg)
    waiter = backend.change_waiter()
    try:
        async with anyio.create_task_group() as tg:
            async def write_soon() -> None:
                await anyio.sleep(0.05)
                with pg.run("async") as run:
                    run.stream(1)

            tg.start_soon(write_soon)
            await waiter.await_change(timeout=30)
        assert waiter.notifications == 1  # type: ignore[attr-defined]
    finally:
        waiter.close()


# ------------------------------------------------------------------ migrations, copy

def _sample(store: runlog.Store) -> None:
    with store.run("rag", tags=["t"], metadata={"u": 1}, inputs={"q": "x"}) as root:
        with root.child("llm", "llm") as m:
            for tok in "abc":
                m.token(tok)
            m.end("abc")
        root.end({"a": "abc"})
    bad = store.start_run("bad")
    bad.stream("partial")
    bad.end(error=ValueError("boom"))
    store.start_run("left-open").stream("x")
    store.flush()


def _snapshot(store: runlog.Store) -> list[tuple[int, bytes, bytes | None]]:
    return [(e.seq, e.raw, e.digest) for e in store.events(digests=True)]


@pytest.mark.parametrize("direction", ["sqlite->postgres->sqlite", "postgres->postgres"])
def test_copy_keeps_bytes_seqs_and_chains(direction: str, tmp_path: Path) -> None:
    if direction.startswith("sqlite"):
        first, second, third = (str(tmp_path / "a.db"), pg_support.store_url(),
                                str(tmp_path / "c.db"))
    else:
        first, second, third = (pg_support.store_url(), pg_support.store_url(),
                                pg_support.store_url())
    with runlog.open(first) as s:
        _sample(s)
        original = _snapshot(s)
        statuses = {r.name: r.status for r in s.runs()}
    report = copy_store(first, second)
    assert (report.events, report.runs, report.last_seq) == (len(original), 4, len(original))
    copy_store(second, third, batch_size=3)
    for target in (second, third):
        with runlog.open(target, create=False) as s:
            assert _snapshot(s) == original
            assert s.verify().ok
            copied = {r.name: r.status for r in s.runs()}
            assert copied == {**statuses, "left-open": "abandoned"}
    with pytest.raises(StoreError, match="already has events"):
        copy_store(first, second)


@pytest.mark.usefixtures("wide_sqlite_layout")  # edits its columns
def test_copy_stops_at_a_broken_chain(tmp_path: Path) -> None:
    import sqlite3

    src = tmp_path / "a.db"
    with runlog.open(src) as s:
        _sample(s)
    conn = sqlite3.connect(src, isolation_level=None)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("UPDATE events SET raw = replace(raw, 'abc', 'abd') WHERE seq = 6")
    conn.close()
    with pytest.raises(runlog.CorruptStoreError, match="seq 6"):
        copy_store(src, pg_support.store_url())


def test_cli_migrate_and_copy(tmp_path: Path) -> None:
    url = pg_support.store_url()
    runner = CliRunner()
    res = runner.invoke(cli, ["migrate", "--db", url])
    assert res.exit_code == 0, res.output
    assert "created" in res.output
    res = runner.invoke(cli, ["migrate", "--db", url])
    assert "up to date" in res.output
    with runlog.open(url) as s:
        _sample(s)
    res = runner.invoke(cli, ["copy", "--from", url, "--to", str(tmp_path / "x.db")])
    assert res.exit_code == 0, res.output
    assert "copied 12 events of 4 runs" in res.output
    res = runner.invoke(cli, ["copy", "--from", url, "--to", str(tmp_path / "x.db")])
    assert res.exit_code == 1
    assert "already has events" in res.output


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@pytest.mark.usefixtures("wide_sqlite_layout")  # edits its columns
def test_migrations_apply_in_order_once(kind: str, tmp_path: Path) -> None:
    """A registered step runs once, with its version bump, on both dialects."""
    location = str(tmp_path / "m.db") if kind == "sqlite" else pg_support.store_url()
    with runlog.open(location) as s:
        _sample(s)
    step = Migration(2, "an index on kind", {
        "sqlite": ["CREATE INDEX events_kind ON events (kind)"],
        "postgresql": ["CREATE INDEX events_kind ON events (kind)"],
    })
    seen: list[int] = []
    report = migrate(location, registry=[step], progress=lambda m: seen.append(m.version))
    assert (report.before, report.after, seen) == (1, 2, [2])
    again = migrate(location, registry=[step])
    assert (again.before, again.after, again.applied) == (2, 2, ())
    with pytest.raises(SchemaVersionError, match="newer"):  # this runlog knows only 1
        runlog.open(location)
    with pytest.raises(SchemaVersionError, match="newer"):
        migrate(location)
