"""The compact layout's page query joins a trace's envelopes in SQL (``_joined_sql``):
it must give exactly the bytes :func:`runlog.store.layout.join` gives, for every row a
store can hold, including ones runlog never writes (whole envelopes, runs without a
header, unknown codes, run keys that name no run, code-6 rows and their templates)."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runlog.store import layout
from runlog.store.base import EventQuery
from runlog.store.sqlite import SQLiteBackend

_HEADER = (b'"run_id":"r1","parent_id":null,"trace_id":"t","name":"m","run_type":"llm",'
           b'"tags":[],"metadata":{}')
_TEMPLATE_BODY = b',"channel":"token","data":{"token":"ab","chunk":{"text":"ab","n":1}}}'

_ROWS = st.lists(st.tuples(
    st.sampled_from([1, 1, 1, 2, 99]),  # run key: 2 has no header, 99 names no run
    st.sampled_from([layout.WHOLE, layout.START, layout.STREAM, layout.END, layout.OUTPUT,
                     layout.TOKEN, layout.TEMPLATED, 9]),
    st.integers(min_value=-5, max_value=10**12),
    st.binary(max_size=12).map(lambda b: b.decode("latin-1").encode())  # valid UTF-8
    | st.sampled_from([b'"tok"', b"{}", b"", b'2"x"', b'5"\\"q"', b'1"tok"', b'1"a\\"b"',
                       b"1", b'x"y"', b"'; --", b"%d%s"])),
    min_size=1, max_size=30)


def _store(path: Path, rows: list[tuple[int, int, int, bytes]]) -> None:
    """A compact store holding ``rows`` ``(run key, code, time, body)`` as they are, after
    a template row (seq 1, run 1) that code-6 rows may name."""
    SQLiteBackend(path, layout="compact").close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "INSERT INTO runs (run_key, run_id, trace_key, trace_id, parent_id, name, run_type, "
        "tags, metadata, header, start_seq, start_time, status) VALUES "
        "(1, 'r1', 1, 't', NULL, 'm', 'llm', '[]', '{}', ?, 1, 1000, 'running'), "
        "(2, 'r2', 1, 't', 'r1', 'h', 'tool', '[]', '{}', NULL, 2, 7, 'running')",
        (_HEADER.decode(),))
    conn.executemany(
        "INSERT INTO events (seq, run_key, trace_key, time, code, body, digest) "
        "VALUES (?, ?, 1, ?, ?, ?, x'00')",
        [(1, 1, 0, layout.STREAM, _TEMPLATE_BODY.decode())]
        + [(seq, key, time, code, body.decode())
           for seq, (key, code, time, body) in enumerate(rows, start=2)])
    conn.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ROWS, st.sampled_from([1, 3, 1000]))
@example([(1, layout.TEMPLATED, 5, b'1"tok"'), (1, layout.TEMPLATED, 9, b'1"a\\"b"'),
          (2, layout.TEMPLATED, 3, b'1"x"'), (99, layout.TEMPLATED, 1, b'1"y"'),
          (1, layout.TEMPLATED, 2, b'7"z"'), (1, layout.TOKEN, 4, b'"t"'),
          (1, layout.TEMPLATED, 6, b'1'), (1, layout.TEMPLATED, 7, b'2"q"')], 3)
@example([(1, layout.TEMPLATED, 5, b'1"tok"')] * 5 + [(1, layout.END, 8, b"}")], 1000)
def test_the_sql_join_gives_the_bytes_layout_join_gives(
        rows: list[tuple[int, int, int, bytes]], page: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.db"
        _store(path, rows)
        backend = SQLiteBackend(path, create=False)
        statements: list[str] = []
        backend._reader().set_trace_callback(statements.append)

        def read(**scope: Any) -> list[tuple[int, bytes, bytes | None]]:
            out: list[tuple[int, bytes, bytes | None]] = []
            q = EventQuery(after=0, limit=page, digests=True, **scope)
            while True:
                events, high = backend.read(q)
                out += [(e.seq, e.raw, e.digest) for e in events]
                if len(events) < page:
                    return out
                q = EventQuery(after=high, limit=page, digests=True, **scope)

        everything = read()  # no trace or runs: joined in Python
        assert not any("CASE e.run_key" in s for s in statements)
        headers = {1: (_HEADER, 1000), 2: (None, 7)}
        stored = {1: (1, layout.STREAM, 0, _TEMPLATE_BODY)}
        stored.update(enumerate(rows, start=2))
        expected = []
        for seq, (key, code, time, body) in stored.items():
            header, start = headers.get(key, (None, 0))
            ref = layout.template_seq(body) if code == layout.TEMPLATED else None
            template = (layout.template_of(stored[ref][1], stored[ref][3])
                        if ref in stored else None)
            expected.append((seq, layout.join(code, body, start + time, header, template),
                             b"\x00"))
        assert everything == expected
        statements.clear()
        in_trace = read(trace_id="t")  # joined by SQLite (run 99's rows: by Python)
        assert any("CASE e.run_key" in s for s in statements)  # the path under test
        assert in_trace == everything
        assert read(run_ids=frozenset({"r1", "r2"})) == [
            e for e in everything if e[0] == 1 or rows[e[0] - 2][0] in (1, 2)]
        # without digests, the runs guessed to hold no code-6 row: the page query has no
        # code-6 column, and such rows come back NULL and are joined in Python
        for scope, want in (({"trace_id": "t"}, everything),
                            ({"run_ids": frozenset({"r1", "r2"})}, [
                                e for e in everything
                                if e[0] == 1 or rows[e[0] - 2][0] in (1, 2)])):
            backend._untemplated.update({1, 2})
            statements.clear()
            got = _read_plain(backend, page, **scope)
            assert not _has_templated_column(next(s for s in statements if "CASE e.run_key" in s))
            assert got == [(seq, raw, None) for seq, raw, _ in want]
        backend.close()


_TEMPLATED_COLUMN = f"e.code = {layout.TEMPLATED} AND e.run_key IN"


def _has_templated_column(sql: str) -> bool:
    return _TEMPLATED_COLUMN in sql


def _read_plain(backend: SQLiteBackend, page: int, **scope: Any
                ) -> list[tuple[int, bytes, bytes | None]]:
    """Every event of ``scope`` as ``(seq, raw, digest)``, read without digests."""
    out: list[tuple[int, bytes, bytes | None]] = []
    q = EventQuery(after=0, limit=page, **scope)
    while True:
        events, high = backend.read(q)
        out += [(e.seq, e.raw, e.digest) for e in events]
        if len(events) < page:
            return out
        q = EventQuery(after=high, limit=page, **scope)


def test_a_page_without_code_6_rows_makes_the_next_one_read_two_columns() -> None:
    """A trace's page that held no code-6 row makes its next page's query leave out the
    code-6 column; a code-6 row read that way is still joined (in Python, the same
    bytes), and the page after it has the column again."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.db"
        _store(path, [(1, layout.TOKEN, 5, b'"a"'), (1, layout.TOKEN, 6, b'"b"'),
                      (1, layout.TEMPLATED, 7, b'1"c"'), (1, layout.TOKEN, 8, b'"d"')])
        backend = SQLiteBackend(path, create=False)
        statements: list[str] = []
        backend._reader().set_trace_callback(statements.append)

        first = _read_plain(backend, 2, trace_id="t")  # pages: seqs 1-2, 3-4, 5
        assert [_has_templated_column(s) for s in statements
                if "CASE e.run_key" in s] == [True, False, True]  # seq 4 is code 6
        statements.clear()
        # the last page (seq 5) held none again: the next read starts without the column
        assert _read_plain(backend, 2, trace_id="t") == first
        assert [_has_templated_column(s) for s in statements
                if "CASE e.run_key" in s] == [False, False, True]
        with_digests, _ = backend.read(EventQuery(after=0, limit=9, trace_id="t",
                                                  digests=True))
        assert [(e.seq, e.raw) for e in with_digests] == [(q, r) for q, r, _ in first]
        assert first[3][1] == layout.join(
            layout.TEMPLATED, b'1"c"', 1000 + 7, _HEADER,
            layout.template_of(layout.STREAM, _TEMPLATE_BODY))
        backend.close()

