"""Layout code 7, a token row without its JSON quotes, and the schema (3) that says a
store may hold such rows (``runlog/store/layout.py``, docs/storage.md).

What must hold: a code-7 row joins to exactly the bytes the code-5 row of the same
token gives (in Python and in the SQL join), so ``Event.raw``, digests and exports do
not change; only stores at schema 3 get code-7 rows; a store at schema 2 (the fixture in
``tests/fixtures/schema2/``, recorded by runlog before code 7) keeps opening, reading
and writing code 5 until ``runlog migrate`` bumps it to 3; runlog that knows only
schema 2 refuses a store at 3 (simulated here), and this runlog refuses a store newer
than it knows.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import runlog
from runlog import codec
from runlog.cli import cli
from runlog.errors import SchemaVersionError
from runlog.events import envelope_header
from runlog.store import layout
from runlog.store.base import EventQuery
from runlog.store.migrations import migrate
from runlog.store.sqlite import SQLiteBackend, _joined_sql

FIXTURE = Path(__file__).parent / "fixtures" / "schema2"
EXPECTED: list[dict[str, Any]] = json.loads((FIXTURE / "expected.json").read_text())["events"]

_HEADER = envelope_header(run_id="r1", parent_id=None, trace_id="t",
                          fields=(b'"m"', b'"llm"', b"[]", b"{}"))

# any text, lone surrogates included (the codec keeps a str holding one as a tagged
# object, so such a token is stored as code 5), and the cases JSON escapes
_TOKENS = st.text(st.characters(codec="utf-8") | st.characters(categories=["Cs", "Cc"])
                  | st.sampled_from(['"', "\\", "u", "/", "\u2028", "\x7f", "\x00"]),
                  max_size=12) | st.sampled_from(["\\u0041", '\\"', '"\\'])
_HARD = ['"', "\\", '\\"', '"\\', "", "\ud800", "a\udfffb", "\x00\x1f", "é😀", '""', "\\\\\""]


def _code5(token: str, time_us: int) -> bytes:
    """The envelope the recorder makes for ``run.token(token)`` (a code-5 row's join)."""
    return layout.join(layout.TOKEN, codec.encode(token), time_us, _HEADER)


@settings(max_examples=300, deadline=None)
@given(_TOKENS, st.integers(min_value=0, max_value=runlog.events.TIME_MAX))
@example("", 0)
@example('a"b\\', 5)
@example("\ud800", 7)
def test_a_string_token_is_stored_without_quotes_and_joins_to_the_code5_bytes(
        token: str, time_us: int) -> None:
    text = codec.encode(token)
    raw = _code5(token, time_us)
    code, body = layout.split("stream", raw, time_us, _HEADER, True)
    is_string = isinstance(codec.loads_plain(text), str)
    assert (code, body) == ((layout.BARE_TOKEN, text[1:-1]) if is_string
                            else (layout.TOKEN, text))
    assert layout.join(code, body, time_us, _HEADER) == raw
    # the writer's path: the recorder's hint (code 5, its encoding), checked, then bare
    assert layout.split_known("stream", raw, time_us, _HEADER, (layout.TOKEN, text),
                              True) == (code, body)
    # a store at schema 2 keeps code 5, whatever the hint says
    assert layout.split("stream", raw, time_us, _HEADER) == (layout.TOKEN, text)
    assert layout.split_known("stream", raw, time_us, _HEADER, (code, body)) == (
        layout.TOKEN, text)
    # the parts readers join a code-7 row from (the SQL join binds them)
    head, before, after = layout.joiner(code, _HEADER)  # type: ignore[misc]
    assert b"%b%d%b%b%b" % (head, time_us, before, body, after) == raw


def test_only_one_json_string_loses_its_quotes() -> None:
    """A body that only looks like a string (a hand-made envelope's extra key, a lone
    quote) stays code 5: code 7 stands for a token that is a JSON string."""
    for body in (b'"a","x":"b"', b'"', b'"a\\"', b'["a"]', b'"a"b"', b'"\\\\"x"'):
        raw = layout.join(layout.TOKEN, body, 9, _HEADER)
        assert layout.split("stream", raw, 9, _HEADER, True) == (layout.TOKEN, body)
        assert layout.join(*layout.split("stream", raw, 9, _HEADER, True), 9, _HEADER) == raw
    assert layout.bare_token(b'"\\\\"') == b"\\\\"
    assert layout.bare_token(b'""') == b""


def _store_with(path: Path, rows: list[tuple[int, int, bytes]]) -> None:
    """A compact store holding ``rows`` ``(code, time, body)`` of run 1 as they are."""
    SQLiteBackend(path, layout="compact").close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "INSERT INTO runs (run_key, run_id, trace_key, trace_id, parent_id, name, run_type, "
        "tags, metadata, header, start_seq, start_time, status) VALUES "
        "(1, 'r1', 1, 't', NULL, 'm', 'llm', '[]', '{}', ?, 1, 1000, 'running')",
        (_HEADER.decode(),))
    conn.executemany(
        "INSERT INTO events (seq, run_key, trace_key, time, code, body, digest) "
        "VALUES (?, 1, 1, ?, ?, ?, x'00')",
        [(seq, time, code, body.decode()) for seq, (code, time, body) in enumerate(rows, 1)])
    conn.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_TOKENS, st.integers(min_value=0, max_value=10**12)),
                min_size=1, max_size=20))
@example([(t, i) for i, t in enumerate(_HARD)])
def test_the_sql_join_of_code7_rows_gives_the_code5_bytes(
        tokens: list[tuple[str, int]]) -> None:
    rows = [layout.split("stream", _code5(tok, 1000 + time), 1000 + time, _HEADER, True)
            for tok, time in tokens]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.db"
        _store_with(path, [(code, time, body) for (code, body), (_, time) in
                           zip(rows, tokens, strict=True)])
        conn = sqlite3.connect(path)
        conn.text_factory = bytes
        sql, params = _joined_sql([(1, _HEADER, 1000)])  # the expression itself, not the
        by_sql = [r[0] for r in conn.execute(  # Python fallback for rows it leaves NULL
            f"SELECT {sql} FROM events e ORDER BY e.seq", params)]
        conn.close()
        backend = SQLiteBackend(path, create=False)
        statements: list[str] = []
        backend._reader().set_trace_callback(statements.append)
        in_trace, _ = backend.read(EventQuery(after=0, limit=100, trace_id="t"))
        assert any("CASE e.run_key" in s for s in statements)  # joined by SQLite
        everything, _ = backend.read(EventQuery(after=0, limit=100))  # joined in Python
        backend.close()
    expected = [_code5(tok, 1000 + time) for tok, time in tokens]
    assert by_sql == expected
    assert [e.raw for e in in_trace] == expected
    assert [e.raw for e in everything] == expected


def _codes(path: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(path)
    try:
        return [(int(c), str(b)) for c, b in conn.execute("SELECT code, body FROM events")]
    finally:
        conn.close()


def _version(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'"
                                ).fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def v2(tmp_path: Path) -> Path:
    """A copy of the schema-2 fixture store."""
    db = tmp_path / "store.db"
    shutil.copyfile(FIXTURE / "store.db", db)
    return db


def _record_tokens(store: runlog.Store) -> list[bytes]:
    with store.run("more", run_type="llm") as run:
        for tok in _HARD:
            run.token(tok)
        rid = run.id
    return [e.raw for e in store.events(run_id=rid)]


def test_a_new_store_is_at_schema_3_and_records_code7_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with runlog.open(path) as store:
        raws = _record_tokens(store)
        assert store.verify().ok
    assert _version(path) == "3"
    codes = [c for c, _ in _codes(path)]
    strings = [isinstance(codec.loads_plain(codec.encode(t)), str) for t in _HARD]
    assert codes[1:-1] == [layout.BARE_TOKEN if s else layout.TOKEN for s in strings]
    assert [orjson_token(r) for r in raws[1:-1]] == [codec.encode(t) for t in _HARD]


def orjson_token(raw: bytes) -> bytes:
    """The token's JSON text in a token envelope (between the fixed texts)."""
    before, after = b',"channel":"token","data":{"token":', b',"chunk":null}}'
    return raw[raw.index(before) + len(before):len(raw) - len(after)]


def test_the_schema2_fixture_reads_as_recorded_and_keeps_writing_code5(v2: Path) -> None:
    with runlog.open(v2, create=False) as store:
        got = [{"seq": e.seq, "raw": e.raw.decode(), "digest": e.digest.hex()}
               for e in store.events(digests=True)]
        assert got == EXPECTED
        raws = _record_tokens(store)
        assert store.verify().ok
    assert _version(v2) == "2"
    new = _codes(v2)[len(EXPECTED):]
    assert layout.BARE_TOKEN not in [c for c, _ in _codes(v2)]
    assert [c for c, _ in new[1:-1]] == [layout.TOKEN] * len(_HARD)
    # the same envelopes a schema-3 store joins (run ids and times aside)
    assert [orjson_token(r) for r in raws[1:-1]] == [codec.encode(t) for t in _HARD]


def test_runlog_that_knows_schema_2_refuses_a_schema_3_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.db"
    runlog.open(path).close()
    monkeypatch.setattr(layout, "BARE_SCHEMA_VERSION", 2)  # runlog before code 7
    with pytest.raises(SchemaVersionError, match="schema 3, newer than this runlog "
                                                 r"understands \(2\)"):
        runlog.open(path, create=False)


def test_a_compact_store_newer_than_this_runlog_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    runlog.open(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(SchemaVersionError, match=r"schema 4, newer than this runlog "
                                                 r"understands \(3\); upgrade"):
        runlog.open(path, create=False)
    with pytest.raises(SchemaVersionError, match="schema 4"):
        migrate(str(path))
    assert _version(path) == "4"  # never touched


def test_migrate_takes_a_schema2_store_to_3_by_the_version_alone(v2: Path) -> None:
    rows = _codes(v2)
    out = CliRunner().invoke(cli, ["migrate", "--db", str(v2)])
    assert out.exit_code == 0, out.output
    assert "from schema version 2 to 3" in out.output
    assert _version(v2) == "3"
    assert _codes(v2) == rows  # no row changed
    with runlog.open(v2, create=False) as store:
        assert [{"seq": e.seq, "raw": e.raw.decode(), "digest": e.digest.hex()}
                for e in store.events(digests=True)] == EXPECTED
        _record_tokens(store)
        assert store.verify().ok
    new = _codes(v2)[len(rows):]
    assert layout.BARE_TOKEN in [c for c, _ in new]  # now written as a 3-store's
    again = CliRunner().invoke(cli, ["migrate", "--db", str(v2)])
    assert again.exit_code == 0
    assert "up to date" in again.output


def test_migrate_to_2_leaves_a_schema2_store_alone(v2: Path) -> None:
    report = migrate(str(v2), target=2)
    assert (report.before, report.after, report.applied) == (2, 2, ())
    assert _version(v2) == "2"


def test_verify_reports_a_code7_row_in_a_schema2_store(v2: Path) -> None:
    """The row joins to the very bytes its digest covers, so only the schema says that
    runlog before code 7 would misread it."""
    conn = sqlite3.connect(v2, isolation_level=None)
    conn.execute("DROP TRIGGER events_no_update")  # what a bug could do
    conn.execute("UPDATE events SET code = 7, body = 'tok' WHERE seq = 2")  # was "tok"
    conn.close()
    with runlog.open(v2, create=False) as store:
        report = store.verify()
    assert not report.ok
    assert "code-7 row" in str(report.first_error)


def test_a_tail_started_mid_run_reads_code7_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with runlog.open(path) as writer, runlog.open(path) as reader:
        run = writer.start_run("chat", run_type="llm")
        for tok in _HARD[:4]:
            run.token(tok)
        writer.flush()
        cursor = writer.last_seq()
        tail = reader.tail(after=cursor, idle_timeout=10)
        for tok in _HARD[4:]:
            run.token(tok)
        run.end()
        writer.flush()
        got = []
        for e in tail:
            got.append(e)
            if e.kind == "end":
                break
        tail.close()
        assert [e.data["token"] for e in got[:-1]] == _HARD[4:]
        assert [e.raw for e in got] == [e.raw for e in writer.events(after=cursor)]
    codes = [c for c, _ in _codes(path)]
    assert layout.BARE_TOKEN in codes[cursor:]
