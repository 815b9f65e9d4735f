"""The compact SQLite layout (schema 2): the store contract and the store machine on it,
rows that join back to exactly the envelopes recorded, the same values and views as the
wide layout, and ``runlog verify`` catching an edit of any part of a row or of a run's
header."""

from __future__ import annotations

import itertools
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test
from test_store_contract import *  # noqa: F403 - the contract, run again on this layout

import runlog
from runlog import codec
from runlog.events import encode_run_fields, envelope_header, make_envelope
from runlog.store import layout
from runlog.store.sqlite import SQLiteBackend
from runlog.testing.machine import store_machine
from runlog.testing.strategies import awkward_values, json_values, play, programs, same_value


def open_compact(path: Path) -> runlog.Store:
    return runlog.Store(SQLiteBackend(path, layout="compact"))


@pytest.fixture
def store(tmp_path: Path) -> Any:
    """The contract's ``store``, here only SQLite in the compact layout."""
    s = open_compact(tmp_path / "runs.db")
    assert isinstance(s.backend, SQLiteBackend)
    assert s.backend.compact
    try:
        yield s
    finally:
        s.close()


# ------------------------------------------------------------------ split and join

_kinds = st.sampled_from(["start", "stream", "end"])
_times = st.integers(min_value=runlog.events.TIME_MIN, max_value=runlog.events.TIME_MAX)


@st.composite
def envelopes(draw: st.DrawFn) -> tuple[str, bytes, int, bytes]:
    """An envelope as the recorder makes it (any kind, channel, data, error, inputs)."""
    names = st.text(min_size=1, max_size=8)
    fields = encode_run_fields(draw(names), draw(names), draw(st.lists(names, max_size=3)),
                               draw(st.dictionaries(names, json_values(), max_size=3)))
    header = envelope_header(run_id=draw(names), parent_id=draw(st.none() | names),
                             trace_id=draw(names), fields=fields)
    kind = draw(_kinds)
    time_us = draw(_times)
    data = codec.encode(draw(awkward_values()), lossy=True)
    channel = draw(st.sampled_from([None, "output", "token", "custom"])) if kind == "stream" \
        else None
    if channel == "token" and draw(st.booleans()):
        data = b'{"token":' + codec.dumps_plain(draw(st.text(max_size=5))) + b',"chunk":null}'
    extra: dict[str, Any] = {}
    if kind == "end":
        if draw(st.booleans()):
            extra["error"] = codec.encode({"type": "E", "message": draw(names)})
        if draw(st.booleans()):
            extra["inputs"] = codec.encode(draw(json_values()))
    return kind, make_envelope(kind, header, time_us, data, channel=channel, **extra), \
        time_us, header  # type: ignore[arg-type]


@given(envelopes())
def test_every_envelope_joins_back_from_its_row(case: tuple[str, bytes, int, bytes]) -> None:
    kind, raw, time_us, header = case
    code, body = layout.split(kind, raw, time_us, header)
    assert code != layout.WHOLE  # the recorder's envelopes are always split
    assert layout.KIND_OF_CODE[code] == kind
    assert layout.join(code, body, time_us, header) == raw
    assert len(body) < len(raw) - len(header)


@given(_kinds, st.binary(max_size=300), _times, st.none() | st.binary(max_size=80))
def test_any_bytes_join_back_whatever_their_shape(kind: str, raw: bytes, time_us: int,
                                                  header: bytes | None) -> None:
    code, body = layout.split(kind, raw, time_us, header)
    assert layout.join(code, body, time_us, header) == raw


def test_a_token_row_holds_the_token_alone() -> None:
    header = envelope_header(run_id="r", parent_id=None, trace_id="r",
                             fields=encode_run_fields("m", "chat_model", ["t"], {"k": 1}))
    raw = make_envelope("stream", header, 7, b'{"token":"Hel","chunk":null}', channel="token")
    assert layout.split("stream", raw, 7, header) == (layout.TOKEN, b'"Hel"')
    assert layout.split("stream", raw, 8, header)[0] == layout.WHOLE  # not its time
    assert layout.split("stream", raw, 7, header + b" ")[0] == layout.WHOLE


# -------------------------------------------------- same values, same views as wide

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(program=programs())
def test_compact_and_wide_stores_hold_the_same_events(program: Any, tmp_path: Path) -> None:
    """The same program played into both layouts: the same bytes and digests at the same
    seqs, values decoding to what was recorded, the same runs, the same views."""
    n = next(_cases)
    wide = runlog.Store(SQLiteBackend(tmp_path / f"wide{n}.db", layout="wide"))
    compact = open_compact(tmp_path / f"compact{n}.db")
    try:
        for s in (wide, compact):
            play(program, s, time_base=1_700_000_000_000_000,
                 run_id=lambda path: str(uuid.uuid5(uuid.NAMESPACE_OID, f"{n}{path}")))
            s.flush()
        w = list(wide.events(digests=True))
        c = list(compact.events(digests=True))
        assert [(e.seq, e.raw, e.digest) for e in c] == [(e.seq, e.raw, e.digest) for e in w]
        for a, b in zip(w, c, strict=True):
            assert b.run_id == a.run_id
            assert same_value(b.data, a.data)
            assert (b.kind, b.name, b.run_type, b.tags, b.channel, b.time_us) == (
                a.kind, a.name, a.run_type, a.tags, a.channel, a.time_us)
        assert compact.verify().ok
        roots = [r for r in compact.runs(newest_first=False) if r.parent_id is None]
        wroots = [r for r in wide.runs(newest_first=False) if r.parent_id is None]
        assert [(r.name, r.status, r.event_count) for r in roots] == [
            (r.name, r.status, r.event_count) for r in wroots]
        for r in roots:
            for view in ("log", "events"):
                assert same_views(compact.replay(r.run_id, view), wide.replay(r.run_id, view))
    finally:
        wide.close()
        compact.close()


_cases = itertools.count()


def same_views(a: Any, b: Any) -> bool:
    """Two replays yield equal items (revived exceptions compared by class and args)."""
    def plain(v: Any) -> Any:
        if isinstance(v, BaseException):
            return (type(v), v.args)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    pa, pb = [plain(x) for x in a], [plain(x) for x in b]
    return pa == pb or repr(pa) == repr(pb)  # repr: NaN equals NaN


def test_recorded_values_decode_exactly(tmp_path: Path) -> None:
    values = [{"a": [1, 2.5, None]}, b"\x00bytes", (1, "t"), {3, 4}, float("inf"), "é\ud800"]
    with open_compact(tmp_path / "v.db") as s:
        with s.run("r", tags=["x"], metadata={"when": (1, 2)}, inputs=values) as run:
            for v in values:
                run.stream(v, lossy=False)
            run.token("tok", {"logprob": -1.5})
            run.end({"out": values})
        events = list(s.replay(run.id))
    assert same_value(events[0].data, values)
    assert [same_value(e.data, v) for e, v in zip(events[1:-2], values, strict=True)]
    assert all(same_value(e.data, v) for e, v in zip(events[1:-2], values, strict=True))
    assert events[-2].data == {"token": "tok", "chunk": {"logprob": -1.5}}
    assert events[0].metadata == {"when": (1, 2)}
    assert events[-1].tags == ("x",)


def test_the_store_machine_on_the_compact_layout(tmp_path: Path) -> None:
    counter = itertools.count()
    dirs: dict[int, Path] = {}

    def fresh() -> runlog.Store:
        d = tmp_path / f"case{next(counter)}"
        d.mkdir()
        store = open_compact(d / "runs.db")
        dirs[id(store)] = d
        return store

    def reopen(old: runlog.Store) -> runlog.Store:
        d = dirs.pop(id(old))
        store = runlog.open(d / "runs.db", create=False)  # the file says its layout
        assert isinstance(store.backend, SQLiteBackend)
        assert store.backend.compact
        dirs[id(store)] = d
        return store

    machine = store_machine(fresh, reopen, name="CompactStoreMachine")
    run_state_machine_as_test(machine, settings=settings(
        max_examples=15, stateful_step_count=25, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))


# ------------------------------------------------------------ a tail started mid-run

def test_a_tail_started_mid_run_reads_the_runs_fields(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    with open_compact(path) as writer:
        run = writer.start_run("model", "chat_model", tags=["live"], metadata={"m": 1})
        run.token("a")
        writer.flush()
        cursor = writer.last_seq()
        run.token("b")
        run.end({"text": "ab"})
        writer.flush()
        with runlog.open(path, create=False) as reader:  # another backend, cold caches
            got = list(reader.events(after=cursor))
    assert [(e.kind, e.name, e.run_type, e.tags, e.metadata, e.data) for e in got] == [
        ("stream", "model", "chat_model", ("live",), {"m": 1}, {"token": "b", "chunk": None}),
        ("end", "model", "chat_model", ("live",), {"m": 1}, {"text": "ab"})]


# ------------------------------------------------------------------ EXPLAIN

def test_reading_a_trace_walks_the_trace_index(tmp_path: Path) -> None:
    """Why ``trace_key`` is stored in ``events`` as well as in ``runs``: a trace's
    events in seq order come straight from ``events_trace_seq``, no sort."""
    path = tmp_path / "x.db"
    with open_compact(path) as s, s.run("r") as run:
        run.stream(1)
    plan = _trace_page_plan(path, "e.seq, e.run_key, e.time, e.code, e.body")
    # the index is declared on (trace_key) alone: SQLite appends the rowid (seq) to
    # each entry, so the plan searches it by (trace_key, rowid) in seq order
    assert "USING INDEX events_trace_seq (trace_key=? AND rowid>?)" in plan
    assert "TEMP B-TREE" not in plan
    conn = sqlite3.connect(path)
    columns = [r[2] for r in conn.execute("PRAGMA index_xinfo(events_trace_seq)")]
    conn.close()
    assert columns == ["trace_key", None]  # stored: trace_key and the rowid, once


def _trace_page_plan(path: Path, columns: str) -> str:
    """``EXPLAIN QUERY PLAN`` of a trace's page query selecting ``columns``."""
    conn = sqlite3.connect(path)
    try:
        return " ".join(r[3] for r in conn.execute(
            f"EXPLAIN QUERY PLAN SELECT {columns} FROM events e "
            "WHERE e.seq > ? AND e.trace_key = ? ORDER BY e.seq LIMIT ?", (0, 1, 1000)))
    finally:
        conn.close()


def test_a_store_with_the_older_trace_index_reads_and_writes(tmp_path: Path) -> None:
    """Compact stores made before the index lost its ``seq`` keep theirs, which holds
    the seq twice; it orders the same entries the same way, so they read (the plan
    still walks it, no sort) and write as before."""
    path = tmp_path / "x.db"
    with open_compact(path) as s, s.run("r") as run:
        run.stream(1)
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX events_trace_seq")
    conn.execute("CREATE INDEX events_trace_seq ON events (trace_key, seq)")
    conn.commit()
    conn.close()
    with runlog.open(path, create=False) as s:
        with s.run("r2") as run:
            run.stream(2)
        root = next(r for r in s.runs() if r.name == "r")
        assert [e.kind for e in s.replay(root.run_id)] == ["start", "stream", "end"]
        assert s.verify().ok
    plan = _trace_page_plan(path, "e.seq")
    assert "USING COVERING INDEX events_trace_seq (trace_key=? AND seq>?)" in plan
    assert "TEMP B-TREE" not in plan


# ------------------------------------------------------------- edits verify sees

def _recorded(path: Path) -> None:
    with open_compact(path) as s, s.run("root", tags=["t"]) as root:
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
    "UPDATE events SET digest = zeroblob(16) WHERE seq = 3",
    "UPDATE events SET trace_key = 99 WHERE seq = 3",
    "UPDATE runs SET header = replace(header, '\"t\"', '\"u\"') WHERE run_key = 2",
    "UPDATE runs SET name = 'renamed' WHERE run_key = 2",
    "UPDATE runs SET trace_id = 'elsewhere' WHERE run_key = 2",
    "DELETE FROM runs WHERE run_key = 2",
])
def test_verify_sees_an_edit_of_any_part(tmp_path: Path, sql: str) -> None:
    path = tmp_path / "e.db"
    _recorded(path)
    conn = sqlite3.connect(path, isolation_level=None)
    for trigger in ("events_no_update", "events_no_delete", "runs_keep_identity"):
        conn.execute(f"DROP TRIGGER {trigger}")  # what an attacker or a bug could do
    conn.execute(sql)
    conn.close()
    with runlog.open(path, create=False) as s:
        report = s.verify()
    assert not report.ok, sql
    assert report.first_error


def test_the_schema_refuses_to_rewrite_events_or_a_runs_identity(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    _recorded(path)
    conn = sqlite3.connect(path, isolation_level=None)
    for sql in ("UPDATE events SET body = 'x' WHERE seq = 1", "DELETE FROM events",
                "UPDATE runs SET header = 'x'", "UPDATE runs SET run_id = 'x'",
                "UPDATE runs SET trace_key = 5"):
        with pytest.raises(sqlite3.IntegrityError, match="runlog"):
            conn.execute(sql)
    conn.close()


def test_a_second_run_with_the_same_id_is_refused_alone(tmp_path: Path) -> None:
    with open_compact(tmp_path / "d.db") as s:
        first = s.start_run("one")
        first.end()
        other = s.start_run("two")
        other.stream(1)
        backend = s.backend
        from runlog.store.base import pending_from_raw

        dup = pending_from_raw(next(s.events(first.id)).raw, None)
        with pytest.raises(runlog.errors.AppendOnlyError, match="UNIQUE"):
            backend.append([dup], s.writer.info, None)
        other.end()
        s.flush()
        assert [r.name for r in s.runs(newest_first=False)] == ["one", "two"]
        assert s.verify().ok


def test_an_event_of_a_run_never_started_is_refused(tmp_path: Path) -> None:
    with open_compact(tmp_path / "n.db") as s:
        with s.run("r") as run:
            run.stream(1)
        raw = list(s.events(run.id))[1].raw.replace(run.id.encode(), b"0" * 36)
        from runlog.store.base import pending_from_raw

        with pytest.raises(runlog.errors.AppendOnlyError, match="no start"):
            s.backend.append([pending_from_raw(raw, None)], s.writer.info, None)


def test_a_compact_store_takes_fewer_bytes_than_a_wide_one(tmp_path: Path) -> None:
    """The point of the layout, on the same events: under a third of the size."""
    sizes = {}
    for kind in ("wide", "compact"):
        path = tmp_path / f"{kind}.db"
        with runlog.Store(SQLiteBackend(path, layout=kind)) as s, \
                s.run("model", "chat_model", tags=["a"], metadata={"k": "v"}) as run:
            for i in range(3000):
                run.token(str(i % 10))
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        sizes[kind] = path.stat().st_size
    assert sizes["compact"] * 3 < sizes["wide"]


# ------------------------------------------------------ chunk templates (code 6)

_chunk_texts = st.text(alphabet=st.sampled_from('ab "\\é\x00'), max_size=4)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_chunk_texts, st.sampled_from(["same", "other", "none", "list"])),
                min_size=1, max_size=12))
def test_token_chunks_join_back_through_their_templates(tmp_path: Path,
                                                        tokens: list[tuple[str, str]]) -> None:
    """Tokens whose chunk repeats the token (as an AIMessageChunk's content does), in
    chunks of changing shapes: the compact store returns the wide store's bytes, also
    to a reader that starts after the template row."""
    n = next(_cases)
    stores = {kind: runlog.Store(SQLiteBackend(tmp_path / f"{kind}{n}.db", layout=kind))
              for kind in ("wide", "compact")}
    try:
        for s in stores.values():
            run = s.start_run("model", "chat_model", run_id=str(uuid.uuid5(uuid.NAMESPACE_OID,
                                                                            str(n))), time=1)
            for i, (text, shape) in enumerate(tokens):
                chunk = ({"content": text, "id": "run", "n": 1} if shape == "same" else
                         {"other": text} if shape == "other" else
                         None if shape == "none" else [text, text])
                run.token(text, chunk, time=2 + i)
            run.end(None, time=100)
            s.flush()
        want = [(e.seq, e.raw, e.digest) for e in stores["wide"].events(digests=True)]
        assert [(e.seq, e.raw, e.digest)
                for e in stores["compact"].events(digests=True)] == want
        assert stores["compact"].verify().ok
        path = stores["compact"].backend.location
        for after in range(len(want)):  # cold readers, starting anywhere
            with runlog.open(path, create=False) as cold:
                assert [(e.seq, e.raw) for e in cold.events(after=after)] == [
                    (seq, raw) for seq, raw, _ in want[after:]]
    finally:
        for s in stores.values():
            s.close()


def test_a_tail_started_mid_run_decodes_template_encoded_chunks(tmp_path: Path) -> None:
    """A LangChain chain's model chunks are stored against the run's template row; a
    tailer that starts after that row still reads each AIMessageChunk whole."""
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk
    from runlog_langchain import Recorder

    path = tmp_path / "lc.db"
    writer = open_compact(path)
    model = GenericFakeChatModel(messages=iter([AIMessage("one two three four")]))
    rec = Recorder(writer)
    chunks = []
    tail_events: list[Any] = []
    with runlog.open(path, create=False) as reader:
        stream = model.stream("hi", config={"callbacks": [rec]})
        for i, chunk in enumerate(stream):
            chunks.append(chunk)
            if i == 1:  # two tokens in: the template row is behind the tailer's cursor
                writer.flush()
                cursor = writer.last_seq()
        writer.flush()
        tail = reader.tail(after=cursor, idle_timeout=10)
        for e in tail:
            tail_events.append(e)
            if e.kind == "end":
                break
        tail.close()
    conn = sqlite3.connect(path)
    codes = [r[0] for r in conn.execute("SELECT code FROM events WHERE seq > ?", (cursor,))]
    conn.close()
    assert layout.TEMPLATED in codes  # what this test is about
    tokens = [e for e in tail_events if e.channel == "token"]
    assert tail_events[-1].kind == "end"
    assert [e.data["token"] for e in tokens] == [c.content for c in chunks[2:]]
    for e in tokens:
        chunk = e.data["chunk"]
        assert isinstance(chunk, AIMessageChunk)
        assert chunk.content == e.data["token"]
        assert chunk.id == f"lc_run--{e.run_id}"
    writer.close()


@given(envelopes(), st.sampled_from([layout.OUTPUT, layout.TOKEN]), st.binary(max_size=20))
def test_split_known_ignores_parts_that_do_not_fit(case: tuple[str, bytes, int, bytes], code: int,
                                              body: bytes) -> None:
    """``split_known`` (PostgreSQL's writer): parts that do not make the envelope are
    ignored, the row is split as usual."""
    kind, raw, time_us, header = case
    got = layout.split_known(kind, raw, time_us, header, (code, body))
    assert layout.join(*got, time_us, header) == raw
    assert got == layout.split(kind, raw, time_us, header)


_SHAPES = st.sampled_from(["token", "output", "custom"])
_CODES = st.sampled_from([layout.WHOLE, layout.START, layout.STREAM, layout.END, layout.OUTPUT,
                          layout.TOKEN, layout.TEMPLATED, 9])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_SHAPES, st.text(max_size=6), st.none() | st.tuples(
    _CODES, st.binary(max_size=8))), min_size=1, max_size=12))
def test_parts_the_recorder_gives_are_checked(
        events: list[tuple[str, str, tuple[int, bytes] | None]]) -> None:
    """The writer stores the recorder's ``(code, body)`` of an event only when they make
    exactly its envelope: parts that do not (any code, any body) are ignored and the
    envelope is split as usual, so every event reads back as the bytes recorded."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        store = runlog.Store(SQLiteBackend(Path(d) / "s.db", layout="compact"))
        run = store.start_run("m", "chat_model", tags=["t"])
        store.flush()
        caught: list[Any] = []
        put = store.writer.put
        store.writer.put = caught.append  # type: ignore[method-assign]
        for shape, text, _ in events:
            if shape == "token":
                run.token(text)
            elif shape == "output":
                run.stream(text)
            else:
                run.event("e", text)
        store.writer.put = put  # type: ignore[method-assign]
        forged = [p if parts is None else p._replace(parts=parts)
                  for p, (_, _, parts) in zip(caught, events, strict=True)]
        store.writer.backend.append(forged, store.writer.info, None)
        got = [(e.raw, e.digest) for e in store.events(run.id, digests=True)][1:]
        assert got == [(p.raw, p.digest) for p in forged]
        store.close()


