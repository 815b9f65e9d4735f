"""The compact PostgreSQL layout (schema 2): the store contract on it, the same bytes,
digests and views as the wide layout (both insert paths), template-encoded chunks read
by cold readers and a tail started mid-run, ``verify`` catching an edit of any part,
the database refusing rewrites and second runs with an id in use, and wide stores
opening unchanged."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import pg_support
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_format2_compact import same_views
from test_store_contract import *  # noqa: F403 - the contract, run again on this layout

import runlog
from runlog.store import layout
from runlog.store import postgres as pg_module
from runlog.store.base import pending_from_raw
from runlog.store.postgres import PostgresBackend
from runlog.testing.strategies import play, programs, same_value

_cases = itertools.count()


def open_pg(url: str, layout: str = "compact", **kwargs: Any) -> runlog.Store:
    return runlog.Store(PostgresBackend(url, layout=layout, **kwargs))


def _admin(url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(pg_support.libpq_url(), autocommit=True)
    conn.execute(f'SET search_path = "{url.rsplit("schema=", 1)[1]}"')  # type: ignore[arg-type]
    return conn


@pytest.fixture
def store() -> Iterator[runlog.Store]:
    """The contract's ``store``, here only PostgreSQL in the compact layout."""
    s = open_pg(pg_support.store_url())
    assert isinstance(s.backend, PostgresBackend)
    assert s.backend.compact
    try:
        yield s
    finally:
        s.close()


def _play_both(program: Any, insert: str) -> tuple[runlog.Store, runlog.Store]:
    n = next(_cases)
    stores = (open_pg(pg_support.store_url(), "wide", insert=insert),
              open_pg(pg_support.store_url(), "compact", insert=insert))
    for s in stores:
        play(program, s, time_base=1_700_000_000_000_000,
             run_id=lambda path: str(uuid.uuid5(uuid.NAMESPACE_OID, f"pg{n}{path}")))
        s.flush()
    return stores


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=programs(), insert=st.sampled_from(["unnest", "copy"]))
def test_compact_and_wide_pg_stores_hold_the_same_events(program: Any, insert: str) -> None:
    wide, compact = _play_both(program, insert)
    try:
        w = list(wide.events(digests=True))
        c = list(compact.events(digests=True))
        assert [(e.seq, e.raw, e.digest) for e in c] == [(e.seq, e.raw, e.digest) for e in w]
        for a, b in zip(w, c, strict=True):
            assert same_value(b.data, a.data)
        assert compact.verify().ok
        assert [(r.run_id, r.name, r.status, r.event_count, r.start_seq, r.end_seq)
                for r in compact.runs(newest_first=False)] == [
            (r.run_id, r.name, r.status, r.event_count, r.start_seq, r.end_seq)
            for r in wide.runs(newest_first=False)]
        for r in [r for r in compact.runs(newest_first=False) if r.parent_id is None]:
            assert [e.raw for e in compact.events(trace_id=r.trace_id)] == [
                e.raw for e in wide.events(trace_id=r.trace_id)]
            for view in ("log", "events"):
                assert same_views(compact.replay(r.run_id, view), wide.replay(r.run_id, view))
    finally:
        wide.close()
        compact.close()


_chunk_texts = st.text(alphabet=st.sampled_from('ab "\\é\x00'), max_size=4)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_chunk_texts, st.sampled_from(["same", "other", "none"]),
                          st.booleans()), min_size=1, max_size=10),
       st.sampled_from(["unnest", "copy"]))
def test_pg_token_chunks_join_back_through_their_templates(
        tokens: list[tuple[str, str, bool]], insert: str) -> None:
    """Chunks of changing shapes, committed in batches cut anywhere (a template row in
    the same batch as the rows using it, or an earlier one): the wide store's bytes,
    also to a cold reader starting anywhere."""
    n = next(_cases)
    stores = {kind: open_pg(pg_support.store_url(), kind, insert=insert)
              for kind in ("wide", "compact")}
    try:
        for s in stores.values():
            run = s.start_run("model", "chat_model", time=1,
                              run_id=str(uuid.uuid5(uuid.NAMESPACE_OID, f"t{n}")))
            for i, (text, shape, flush) in enumerate(tokens):
                chunk = ({"content": text, "id": "run", "n": 1} if shape == "same" else
                         {"other": text} if shape == "other" else None)
                run.token(text, chunk, time=2 + i)
                if flush:
                    s.flush()
            run.end(None, time=100)
            s.flush()
        want = [(e.seq, e.raw, e.digest) for e in stores["wide"].events(digests=True)]
        assert [(e.seq, e.raw, e.digest)
                for e in stores["compact"].events(digests=True)] == want
        assert stores["compact"].verify().ok
        url = stores["compact"].backend.url
        for after in range(len(want)):
            with runlog.open(url, create=False) as cold:
                assert [(e.seq, e.raw) for e in cold.events(after=after)] == [
                    (seq, raw) for seq, raw, _ in want[after:]]
    finally:
        for s in stores.values():
            s.close()


def test_a_pg_tail_started_mid_run_decodes_template_encoded_chunks() -> None:
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk
    from runlog_langchain import Recorder

    url = pg_support.store_url()
    writer = open_pg(url)
    model = GenericFakeChatModel(messages=iter([AIMessage("one two three four five")]))
    chunks = []
    with runlog.open(url, create=False) as reader:
        for i, chunk in enumerate(model.stream("hi", config={"callbacks": [Recorder(writer)]})):
            chunks.append(chunk)
            if i == 1:
                writer.flush()
                cursor = writer.last_seq()
        writer.flush()
        tail = reader.tail(after=cursor, idle_timeout=10)
        got = []
        for e in tail:
            got.append(e)
            if e.kind == "end":
                break
        tail.close()
    with _admin(url) as admin:
        codes = [r[0] for r in admin.execute("SELECT code FROM events WHERE seq > %s",
                                             (cursor,))]
    writer.close()
    assert layout.TEMPLATED in codes
    tokens = [e for e in got if e.channel == "token"]
    assert [e.data["token"] for e in tokens] == [c.content for c in chunks[2:]]
    for e in tokens:
        assert isinstance(e.data["chunk"], AIMessageChunk)
        assert e.data["chunk"].content == e.data["token"]


def test_a_token_event_row_holds_the_token_alone() -> None:
    """A new store is at schema 3: the token row is code 7, the token without quotes."""
    url = pg_support.store_url()
    with open_pg(url) as s, s.run("r", tags=["x"], metadata={"k": "v"}) as run:
        run.token("tok")
    with _admin(url) as admin:
        row = admin.execute("SELECT code, body, octet_length(digest) FROM events "
                            "WHERE seq = 2").fetchone()
    assert row == (layout.BARE_TOKEN, "tok", 16)


def test_reading_a_trace_walks_the_trace_index() -> None:
    url = pg_support.store_url()
    with open_pg(url) as s:
        for i in range(300):
            with s.run(f"r{i}") as run:
                run.stream(i)
        trace = s.runs(newest_first=False)[7].trace_id
    query, params = pg_module.read_sql(runlog.store.base.EventQuery(trace_id=trace),
                                       compact=True)
    with _admin(url) as admin:
        admin.execute("ANALYZE events")
        plan = "\n".join(r[0] for r in admin.execute(
            "EXPLAIN " + query, params))  # type: ignore[arg-type]
    assert "events_trace_seq" in plan, plan  # (a sort of the trace's few rows may follow)
    assert "Seq Scan" not in plan, plan


def test_two_traces_with_one_key_never_mix(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 64-bit hash can collide: reading a trace keeps only its runs' events."""
    monkeypatch.setattr(pg_module, "trace_key", lambda trace_id: 42)
    with open_pg(pg_support.store_url()) as s:
        with s.run("a") as a:
            a.stream(1)
        with s.run("b") as b:
            b.stream(2)
        assert [e.name for e in s.events(trace_id=a.trace_id)] == ["a"] * 3
        assert [e.name for e in s.events(trace_id=b.trace_id)] == ["b"] * 3
        assert s.verify().ok
        assert s.verify(trace_id=a.trace_id).ok


def _recorded(url: str) -> None:
    with open_pg(url) as s, s.run("root", tags=["t"]) as root:
        with root.child("child", "tool") as child:
            child.stream("original")
            child.end({"ok": 1})
        root.stream("r")
        root.end(None)


@pytest.mark.parametrize("sql", [
    "UPDATE events SET body = replace(body, 'original', 'modified') WHERE seq = 3",
    "UPDATE events SET time = time + 1 WHERE seq = 3",
    "UPDATE events SET code = 2 WHERE seq = 3",
    "UPDATE events SET run_key = 1 WHERE seq = 3",
    "UPDATE events SET digest = '\\x00'::bytea WHERE seq = 3",
    "UPDATE events SET trace_key = 99 WHERE seq = 3",
    "UPDATE runs SET header = replace(header, '\"t\"', '\"u\"') WHERE run_key = 2",
    "UPDATE runs SET name = 'renamed' WHERE run_key = 2",
    "UPDATE runs SET trace_id = 'elsewhere' WHERE run_key = 2",
    "UPDATE runs SET trace_key = 7 WHERE run_key = 2",
    "UPDATE runs SET start_time = start_time - 1 WHERE run_key = 2",
    "DELETE FROM runs WHERE run_key = 2",
])
def test_verify_sees_an_edit_of_any_part(sql: str) -> None:
    url = pg_support.store_url()
    _recorded(url)
    with _admin(url) as admin:
        admin.execute("ALTER TABLE events DISABLE TRIGGER USER")  # an attacker, or a bug
        admin.execute("ALTER TABLE runs DISABLE TRIGGER USER")
        admin.execute(sql)  # type: ignore[arg-type]
    with runlog.open(url, create=False) as s:
        report = s.verify()
    assert not report.ok, sql
    assert report.first_error


def test_the_schema_refuses_to_rewrite_events_or_a_runs_identity() -> None:
    url = pg_support.store_url()
    _recorded(url)
    with _admin(url) as admin:
        for sql in ("UPDATE events SET body = 'x' WHERE seq = 1", "DELETE FROM events",
                    "TRUNCATE events", "UPDATE runs SET header = 'x'",
                    "UPDATE runs SET run_id = 'x'", "UPDATE runs SET trace_key = 5",
                    "UPDATE runs SET start_time = 0"):
            with pytest.raises(psycopg.errors.RaiseException, match="runlog"):
                admin.execute(sql)  # type: ignore[arg-type]


def test_a_second_run_with_the_same_id_is_refused_alone() -> None:
    with open_pg(pg_support.store_url()) as s:
        first = s.start_run("one")
        first.end()
        other = s.start_run("two")
        other.stream(1)
        s.flush()
        dup = pending_from_raw(next(s.events(first.id)).raw, None)
        with pytest.raises(runlog.errors.AppendOnlyError, match="runs_run_id_key"):
            s.backend.append([dup], s.writer.info, None)
        other.end()
        s.flush()
        assert [r.name for r in s.runs(newest_first=False)] == ["one", "two"]
        assert s.verify().ok


def test_an_event_of_a_run_never_started_is_refused() -> None:
    with open_pg(pg_support.store_url()) as s:
        with s.run("r") as run:
            run.stream(1)
        raw = list(s.events(run.id))[1].raw.replace(run.id.encode(), b"0" * 36)
        with pytest.raises(runlog.errors.AppendOnlyError, match="no start"):
            s.backend.append([pending_from_raw(raw, None)], s.writer.info, None)


def test_a_wide_store_keeps_its_layout_whatever_new_stores_get(
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = pg_support.store_url()
    with open_pg(url, "wide") as s, s.run("old") as run:
        run.stream(1)
    monkeypatch.setenv("RUNLOG_PG_LAYOUT", "compact")
    with runlog.open(url, create=False) as s:
        assert isinstance(s.backend, PostgresBackend)
        assert not s.backend.compact
        with s.run("new") as run:
            run.stream(2)
        assert [e.name for e in s.events()] == ["old"] * 3 + ["new"] * 3
        assert s.verify().ok
    compact_url = pg_support.store_url()
    monkeypatch.setenv("RUNLOG_PG_LAYOUT", "wide")
    with open_pg(compact_url) as s:
        s.start_run("c").end()
    with runlog.open(compact_url, create=False) as s:
        assert isinstance(s.backend, PostgresBackend)
        assert s.backend.compact


def test_an_unknown_layout_is_refused() -> None:
    with pytest.raises(ValueError, match="PostgreSQL layout"):
        PostgresBackend(pg_support.store_url(), layout="narrow")


def test_a_compact_pg_store_takes_fewer_bytes_than_a_wide_one() -> None:
    sizes = {}
    for kind in ("wide", "compact"):
        url = pg_support.store_url()
        with open_pg(url, kind) as s, \
                s.run("model", "chat_model", tags=["a"], metadata={"k": "v"}) as run:
            for i in range(3000):
                run.token(str(i % 10))
        with _admin(url) as admin:
            admin.execute("VACUUM events")
            row = admin.execute("SELECT pg_total_relation_size('events')").fetchone()
        assert row is not None
        sizes[kind] = row[0]
    assert sizes["compact"] * 3 < sizes["wide"]


def test_runlog_copy_converts_a_wide_pg_store_to_a_compact_one(tmp_path: Any) -> None:
    """A wide store's conversion on PostgreSQL: ``runlog copy`` into a new schema (new
    stores are compact) keeps every seq, byte and digest, and the copy verifies."""
    import os
    import subprocess
    import sys

    wide_url, compact_url = pg_support.store_url(), pg_support.store_url()
    with open_pg(wide_url, "wide") as s:
        with s.run("root", tags=["t"]) as root:
            for i in range(50):
                root.token(str(i), {"content": str(i), "id": "x"})
            with root.child("kid", "tool") as kid:
                kid.stream({"k": 1})
        before = [(e.seq, e.raw, e.digest) for e in s.events(digests=True)]
    env = {k: v for k, v in os.environ.items() if k != "RUNLOG_PG_LAYOUT"}
    done = subprocess.run([sys.executable, "-c", "from runlog.cli import main; main()",
                           "copy", "--from", wide_url,
                           "--to", compact_url], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    with runlog.open(compact_url, create=False) as s:
        assert isinstance(s.backend, PostgresBackend)
        assert s.backend.compact
        assert [(e.seq, e.raw, e.digest) for e in s.events(digests=True)] == before
        assert s.verify().ok


def _cli(*args: str) -> Any:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "RUNLOG_PG_LAYOUT"}
    return subprocess.run([sys.executable, "-c", "from runlog.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def _wide_store(url: str) -> list[Any]:
    with open_pg(url, "wide") as s:
        with s.run("root", tags=["t"]) as root:
            for i in range(30):
                root.token(str(i), {"content": str(i), "id": "x"})
        return [(e.seq, e.raw, e.digest) for e in s.events(digests=True)]


def test_migrate_compact_converts_a_pg_schema_in_place_and_keeps_the_wide_one() -> None:
    url = pg_support.store_url()
    before = _wide_store(url)
    done = _cli("migrate", "--db", url, "--compact")
    assert done.returncode == 0, done.stderr
    assert "converted 32 events of 1 runs to the compact layout" in done.stdout
    assert "_wide" in done.stdout
    pg_support._created.append(url.rsplit("=", 1)[1] + "_wide")  # dropped at the end
    with runlog.open(url, create=False) as s:
        assert isinstance(s.backend, PostgresBackend)
        assert s.backend.compact
        assert [(e.seq, e.raw, e.digest) for e in s.events(digests=True)] == before
        assert s.verify().ok
        with s.run("after") as run:  # recording goes on in the converted store
            run.stream(1)
        assert s.verify().ok
    with runlog.open(url + "_wide", create=False) as kept:
        assert isinstance(kept.backend, PostgresBackend)
        assert not kept.backend.compact
        assert [(e.seq, e.raw, e.digest) for e in kept.events(digests=True)] == before
    again = _cli("migrate", "--db", url, "--compact")
    assert "compact layout already" in again.stdout


def test_migrate_compact_to_a_new_pg_schema_leaves_the_store_alone() -> None:
    url, to = pg_support.store_url(), pg_support.store_url()
    before = _wide_store(url)
    done = _cli("migrate", "--db", url, "--compact", "--to", to)
    assert done.returncode == 0, done.stderr
    with runlog.open(url, create=False) as s:
        assert isinstance(s.backend, PostgresBackend)
        assert not s.backend.compact
    with runlog.open(to, create=False) as s:
        assert isinstance(s.backend, PostgresBackend)
        assert s.backend.compact
        assert [(e.seq, e.raw, e.digest) for e in s.events(digests=True)] == before


def test_migrate_compact_in_place_refuses_a_live_pg_writer() -> None:
    url = pg_support.store_url()
    _wide_store(url)
    with open_pg(url, "wide") as live:
        live.start_run("open").stream(1)
        live.flush()
        done = _cli("migrate", "--db", url, "--compact")
        assert done.returncode != 0
        assert "live lease" in done.stderr + done.stdout
        assert not live.backend.compact  # type: ignore[attr-defined]


def test_a_schema2_store_keeps_writing_code5_until_migrated_to_3() -> None:
    """A compact store at schema 2 (made before layout code 7) opens and is written with
    code-5 token rows; ``migrate`` takes it to 3 by the version alone (no row changes),
    after which its tokens are stored without quotes; a store at 4 is refused."""
    from runlog.store.migrations import migrate

    url = pg_support.store_url()
    open_pg(url).close()
    with _admin(url) as admin:
        admin.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with open_pg(url) as s, s.run("r") as run:
        run.token('a "quoted" tok')
    with _admin(url) as admin:
        before = admin.execute("SELECT seq, code, body FROM events ORDER BY seq").fetchall()
    assert before[1][1:] == (layout.TOKEN, '"a \\"quoted\\" tok"')
    report = migrate(url)
    assert (report.before, report.after, len(report.applied)) == (2, 3, 1)
    with open_pg(url) as s:
        with s.run("r2") as run:
            run.token('a "quoted" tok')
        assert s.verify().ok
        tokens = [e for e in s.events() if e.channel == "token"]
    assert [e.data["token"] for e in tokens] == ['a "quoted" tok'] * 2
    with _admin(url) as admin:
        after = admin.execute("SELECT seq, code, body FROM events ORDER BY seq").fetchall()
        assert after[:len(before)] == before  # no row changed
        assert after[len(before) + 1][1:] == (layout.BARE_TOKEN, 'a \\"quoted\\" tok')
        admin.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    with pytest.raises(runlog.SchemaVersionError, match=r"schema 4, newer than this "
                                                        r"runlog understands \(3\)"):
        open_pg(url)
