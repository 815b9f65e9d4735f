"""Hostile filters and a hostile PostgreSQL server (issue 15, items 5 and 6).

* Every read path gives exactly the runs ``Filter.matches`` keeps, whatever the runs'
  metadata and tags hold (``$rl:`` keys, NUL, non-string values, unicode).
* ``?schema=`` keeps the name's case; odd names are refused clearly.
* A dropped read connection costs a reconnect, never an event, a repeat or a traceback.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pg_support
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, event

import runlog
from runlog import ANY, Filter
from runlog.errors import StoreError, StoreUnavailableError
from runlog.exporters import export
from tests.conftest import make_store

# ------------------------------------------------------------------ item 5: filters

# Small pools, so generated filters hit generated runs often; each pool holds values
# whose stored form is not their plain form (a `$rl:` key makes the whole metadata one
# `$rl:dict` tag, NUL is cut short by SQLite's JSON functions and refused by JSONB).
TEXTS = ["ann", "a", "a\x00", "a\x00b", "\x00", "é", "😀", "$rl:dict", "$rl:x", "", "A"]
KEYS = st.sampled_from(["user", "$rl:dict", "$rl:x", "$rl:", "k\x00", "k", "é", "", "a\x00b"])
VALUES = st.one_of(
    st.sampled_from(TEXTS), st.integers(-1, 2), st.booleans(), st.none(),
    st.sampled_from([1.0, 0.0, -0.0, 2.5]), st.sampled_from(["\ud800", "a\ud800"]),
    st.lists(st.sampled_from(TEXTS), max_size=2), st.tuples(st.sampled_from(TEXTS)),
    st.dictionaries(KEYS, st.sampled_from(TEXTS), max_size=2),
)
NAMES = st.sampled_from(["llm", "tool", "a\x00", "é", "$rl:x", "A"])
TAGS = st.lists(st.sampled_from(TEXTS), max_size=3, unique=True)
METADATA = st.dictionaries(KEYS, VALUES, max_size=3)
# Filter values may also be what no stored value can be (a lone surrogate).
FTEXTS = st.lists(st.sampled_from([*TEXTS, "\ud800"]), max_size=3)
FMETA = st.dictionaries(KEYS, st.one_of(st.just(ANY), VALUES), max_size=2)


@st.composite
def filters(draw: st.DrawFn) -> Filter:
    kw: dict[str, Any] = {}
    for field, strategy in [("include_names", st.lists(NAMES, max_size=2)),
                            ("include_types", st.lists(NAMES, max_size=2)),
                            ("include_tags", FTEXTS), ("include_metadata", FMETA),
                            ("exclude_names", st.lists(NAMES, max_size=2)),
                            ("exclude_types", st.lists(NAMES, max_size=2)),
                            ("exclude_tags", FTEXTS), ("exclude_metadata", FMETA)]:
        if draw(st.booleans()):
            kw[field] = draw(strategy)
    return Filter(**kw)


RUNS = st.lists(st.tuples(NAMES, NAMES, TAGS, METADATA), min_size=1, max_size=4)


def _jsonl_run_ids(store: runlog.Store, trace_id: str, f: Filter) -> list[str]:
    buf = io.BytesIO()
    export(store, "jsonl", buf, trace_id=trace_id, filter=f)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    return [line["event"]["run_id"] for line in lines if "event" in line]


def _check_every_read_path(store: runlog.Store, runs: list[tuple[str, str, list[str],
                                                                 dict[str, Any]]],
                           f: Filter) -> None:
    before = store.last_seq()
    root = store.start_run(*runs[0][:2], tags=runs[0][2], metadata=runs[0][3])
    made = [root]
    for name, rtype, tags, meta in runs[1:]:
        child = store.start_run(name, rtype, tags=tags, metadata=meta, parent=root,
                                inherit=False)
        child.stream("x")
        child.end(outputs=1)
        made.append(child)
    root.end()
    store.flush()
    trace = root.trace_id
    everything = list(store.events(trace_id=trace))
    exact = [e for e in everything if f.matches(e)]
    want = [e.seq for e in exact]
    want_runs = {r.id for r, spec in zip(made, runs, strict=True)
                 if f.matches_run(spec[0], spec[1], spec[2], spec[3])}
    assert {e.run_id for e in exact} == want_runs  # the oracle agrees with itself

    assert [e.seq for e in store.events(trace_id=trace, filter=f)] == want
    assert [e.seq for e in store.events(after=before, filter=f)] == want
    assert [e.seq for e in store.replay(root.id, filter=f)] == want
    assert {r.run_id for r in store.runs(trace_id=trace, filter=f)} == want_runs
    with store.tail(trace_id=trace, filter=f, until_end=True) as t:
        assert [e.seq for e in t if isinstance(e, runlog.Event)] == want
    # Global mode pushes the filter down to SQL; it stops once caught up and idle.
    with store.tail(after=before, filter=f, idle_timeout=0) as t:
        assert [e.seq for e in t if isinstance(e, runlog.Event)] == want
    assert _jsonl_run_ids(store, trace, f) == [e.run_id for e in exact]


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                  HealthCheck.too_slow], deadline=None)
@given(runs=RUNS, f=filters())
def test_every_read_path_keeps_exactly_what_the_filter_keeps(
        store: runlog.Store, runs: list[tuple[str, str, list[str], dict[str, Any]]],
        f: Filter) -> None:
    """events, replay, runs, both tail modes and the JSONL export equal Filter.matches."""
    _check_every_read_path(store, runs, f)


HOSTILE = [
    # (metadata, tags, filter): each one made SQL drop a run the filter keeps.
    ({"$rl:x": 1, "user": "ann"}, [], Filter(include_metadata={"user": "ann"})),
    ({"$rl:x": 1, "user": "ann"}, [], Filter(include_metadata={"user": ANY})),
    ({"$rl:dict": "v"}, [], Filter(include_metadata={"$rl:dict": "v"})),
    ({"k\x00": "v"}, [], Filter(include_metadata={"k\x00": "v"})),
    ({"k": "v\x00"}, [], Filter(include_metadata={"k": "v\x00"})),
    ({}, ["t\x00u"], Filter(include_tags=["t\x00u"])),
    ({}, ["t\x00u"], Filter(exclude_tags=["t"])),
    ({}, ["t"], Filter(include_tags=["t", "\ud800"], exclude_names=["\ud800"])),
    ({"k": "v"}, [], Filter(include_metadata={"k": "v", "\ud800": "x"})),
]


@pytest.mark.parametrize(("metadata", "tags", "f"), HOSTILE)
def test_hostile_metadata_and_tags_are_found(store: runlog.Store, metadata: dict[str, Any],
                                             tags: list[str], f: Filter) -> None:
    """The cases hypothesis found first, pinned: each read path keeps the run."""
    assert f.matches_run("r", "chain", tags, metadata)
    _check_every_read_path(store, [("r", "chain", tags, metadata)], f)


# ------------------------------------------------------------------ item 6a: schema case

def _drop_schema(name: str) -> None:
    with psycopg.connect(pg_support.libpq_url(), autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            psycopg.sql.Identifier(name)))


@pytest.mark.parametrize("lower_exists", [False, True])
def test_mixed_case_schema_keeps_its_case(lower_exists: bool) -> None:
    """?schema=TeamStore stores in "TeamStore", never in teamstore (nor fails to open)."""
    pg_support.ensure_server()
    name = "Rl" + pg_support.new_schema()  # mixed case, unique per run
    base = pg_support.base_url()
    url = f"{base}{'&' if '?' in base else '?'}schema={name}"
    try:
        if lower_exists:  # a lower-case namesake must not be used instead
            runlog.open(f"{base}{'&' if '?' in base else '?'}schema={name.lower()}").close()
        with runlog.open(url) as s:
            with s.run("cased") as r:
                r.stream(1)
            s.flush()
            assert [e.name for e in s.events()] == ["cased"] * 3
        with runlog.open(url, create=False) as s:
            assert len(s.runs()) == 1
        with psycopg.connect(pg_support.libpq_url(), autocommit=True) as admin:
            count = admin.execute(psycopg.sql.SQL("SELECT count(*) FROM {}.events").format(
                psycopg.sql.Identifier(name))).fetchone()
            assert count == (3,)
            if lower_exists:
                lower = admin.execute(psycopg.sql.SQL("SELECT count(*) FROM {}.events").format(
                    psycopg.sql.Identifier(name.lower()))).fetchone()
                assert lower == (0,)
    finally:
        _drop_schema(name)
        _drop_schema(name.lower())


@pytest.mark.parametrize("name", ['a"b', "a b", "a;b", "1abc", "x" * 64, "abc\n", "é"])
def test_odd_schema_names_are_refused_clearly(name: str) -> None:
    """Names that would need quoting inside quotes are refused, naming the rule."""
    import urllib.parse

    base = pg_support.base_url()
    url = f"{base}{'&' if '?' in base else '?'}schema={urllib.parse.quote(name)}"
    with pytest.raises(StoreError, match="plain identifier"):
        runlog.open(url)


# ------------------------------------------------------- item 6b: dropped connections

def _pg_store(tmp_path: Path) -> tuple[runlog.Store, set[int]]:
    """A PostgreSQL store and the set of server pids its pool connects (filled live)."""
    pg_support.ensure_server()  # fails in CI, skips locally, when the server is down
    s = make_store("postgres", tmp_path)
    backend: Any = s.backend
    pids: set[int] = set()
    event.listen(backend.engine, "connect",
                 lambda dbapi_conn, _rec: pids.add(dbapi_conn.info.backend_pid))
    backend.engine.dispose()  # the connection opening made is not in `pids`: drop it
    return s, pids


def _terminate(pids: set[int]) -> int:
    with psycopg.connect(pg_support.libpq_url(), autocommit=True) as admin:
        rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE pid = ANY(%s)", (sorted(pids),)).fetchall()
    return sum(1 for r in rows if r[0])


def _writer_pid(s: runlog.Store) -> int | None:
    fairy = getattr(s.backend, "_wfairy", None)
    return None if fairy is None else int(fairy.driver_connection.info.backend_pid)


def _wait_for(cond: Any, what: str) -> None:
    """Wait for another thread (a generous bound only against a hang, no timing claim)."""
    deadline = time.monotonic() + 60
    while not cond():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.005)


def test_tail_survives_terminated_read_connections(tmp_path: Path) -> None:
    """pg_terminate_backend of the tail's connections: every event once, in order."""
    s, pids = _pg_store(tmp_path)
    try:
        root = s.start_run("root")
        for i in range(5):
            root.stream(i)
        s.flush()
        seen: list[int] = []
        errors: list[BaseException] = []
        t = s.tail(run_id=root.id, until_end=True, poll_interval=0.02)

        def follow() -> None:
            try:
                for item in t:
                    if isinstance(item, runlog.Event):
                        seen.append(item.seq)
            except BaseException as e:
                errors.append(e)

        th = threading.Thread(target=follow)
        th.start()
        _wait_for(lambda: len(seen) >= 6 or errors, "the first events")
        listen: Any = getattr(t.waiter, "_conn", None)
        victims = pids - {_writer_pid(s)}
        if listen is not None:
            victims.add(listen.info.backend_pid)
        assert _terminate(victims) >= 1
        for i in range(5, 10):
            root.stream(i)
        root.end()
        s.flush()
        th.join(60)
        assert not th.is_alive()
        assert errors == []
        want = [e.seq for e in s.events(run_id=root.id)]
        assert len(want) == 12
        assert seen == want
    finally:
        s.close()


def test_reads_retry_once_on_a_terminated_connection(tmp_path: Path) -> None:
    """runs()/events()/last_seq() after their pooled connections died: answered."""
    s, pids = _pg_store(tmp_path)
    try:
        with s.run("r") as r:
            r.stream(1)
        s.flush()
        for _ in range(3):  # several pooled connections, all about to die
            assert len(s.runs()) == 1
        assert _terminate(pids - {_writer_pid(s)}) >= 1
        assert len(s.runs()) == 1
        assert len(list(s.events())) == 3
        assert s.last_seq() == 3
    finally:
        s.close()


def test_unreachable_server_is_a_clear_store_error(tmp_path: Path) -> None:
    """Reads that cannot reconnect raise StoreUnavailableError, not a driver error."""
    s, pids = _pg_store(tmp_path)
    backend: Any = s.backend
    try:
        assert s.runs() == []
        _terminate(pids)
        backend.engine.dispose()
        backend.engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/test",
                                       connect_args={"connect_timeout": 2})
        with pytest.raises(StoreUnavailableError, match="could not reconnect"):
            s.runs()
        with pytest.raises(StoreUnavailableError):
            list(s.events())
    finally:
        s.close()


@pytest.mark.postgres
def test_long_schema_name_can_be_written() -> None:
    """A 63-character name: the NOTIFY channel "runlog:<name>" would exceed PostgreSQL's
    63 bytes and fail every append ("channel name too long"), so it is a digest instead."""
    pg_support.ensure_server()  # fails in CI, skips locally, when the server is down
    name = ("LongName_" + pg_support.new_schema()[len(pg_support.PREFIX):] + "_" * 63)[:63]
    base = pg_support.base_url()
    url = f"{base}{'&' if '?' in base else '?'}schema={name}"
    try:
        with runlog.open(url) as s:
            with s.run("a") as r:
                r.stream("x")
            s.flush()
            assert len(s.backend.channel.encode()) < 64  # type: ignore[attr-defined]
            assert len(list(s.events())) == 3
            with s.tail(run_id=r.id, until_end=True) as t:
                assert len([e for e in t if isinstance(e, runlog.Event)]) == 3
    finally:
        _drop_schema(name)


def _with_app_name(url: str, app: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={app}"


def _terminate_app(app: str) -> int:
    """Terminate every backend of one reader (its own ``application_name``), never
    another session's; returns how many were terminated."""
    with psycopg.connect(pg_support.libpq_url(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()", (app,)).fetchall()
    return sum(1 for r in rows if r[0])


@pytest.mark.postgres
def test_runlog_tail_cli_survives_terminated_connections(tmp_path: Path) -> None:
    pg_support.ensure_server()  # fails in CI, skips locally, when the server is down
    url = pg_support.store_url(str(tmp_path))
    app = f"rl_cli_{uuid.uuid4().hex[:12]}"  # the URL's application_name is kept
    with runlog.open(url) as writer:
        run = writer.start_run("root")
        run.stream(0)
        writer.flush()
        proc = subprocess.Popen(
            [sys.executable, "-c", "from runlog.cli import main; main()", "tail", "--db",
             _with_app_name(url, app), "--run", run.id, "--until-end", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            first = [proc.stdout.readline() for _ in range(2)]  # start, stream 0
            assert _terminate_app(app) >= 1
            for i in range(1, 4):
                run.stream(i)
            writer.flush()
            run.end()
            writer.flush()
            rest, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err.decode()
        assert b"Traceback" not in err
        lines = first + rest.splitlines(keepends=True)
        assert [json.loads(x)["seq"] for x in lines] == [
            e.seq for e in writer.events(run_id=run.id)]


@pytest.mark.postgres
@pytest.mark.anyio
async def test_atail_survives_terminated_read_connections(tmp_path: Path) -> None:
    pg_support.ensure_server()  # fails in CI, skips locally, when the server is down
    url = pg_support.store_url(str(tmp_path))
    app = f"rl_atail_{uuid.uuid4().hex[:12]}"
    writer = runlog.open(url)
    reader = runlog.open(_with_app_name(url, app))
    try:
        run = writer.start_run("root")
        run.stream(0)
        writer.flush()
        seen: list[int] = []
        async with reader.atail(run_id=run.id, until_end=True, poll_interval=0.05) as t:
            async for item in t:
                assert isinstance(item, runlog.Event)
                seen.append(item.seq)
                if len(seen) in (2, 4):  # drop the connections, then write two more
                    assert _terminate_app(app) >= 1
                    run.stream(len(seen))
                    if len(seen) == 4:
                        run.end()
                    else:
                        run.stream(len(seen) + 1)
                    writer.flush()
        assert seen == [e.seq for e in writer.events(run_id=run.id)]
        assert len(seen) == 6
    finally:
        reader.close()
        writer.close()
