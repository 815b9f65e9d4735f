"""The recorder's ``(TEMPLATED, token)`` hint for a token event with a chunk.

``Run.token`` with a chunk hands the writer the token it encoded, so the compact layout
checks the event against its run's chunk template (code 6) with one join, the one a
reader makes, instead of searching the envelope for the token (``fit_template``). The
hint is only ever a shortcut: whatever it says, every event reads back as the bytes
recorded, and in the usual case the rows are the ones the search would have written.
"""

from __future__ import annotations

import itertools
import sqlite3
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pg_support
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runlog
from runlog.store import layout
from runlog.store.postgres import PostgresBackend
from runlog.store.sqlite import SQLiteBackend

_cases = itertools.count()
_texts = st.text(alphabet=st.sampled_from('ab "\\é\x00'), max_size=4)


def _chunk(text: str, shape: str) -> Any:
    """A chunk repeating the token, as an AIMessageChunk's content does, or another shape."""
    return ({"content": text, "id": "run", "n": 1} if shape == "same" else
            {"other": text} if shape == "other" else [text, text])


def _open(kind: str, where: Path, layout_: str = "compact") -> runlog.Store:
    if kind == "sqlite":
        return runlog.Store(SQLiteBackend(where / f"s{next(_cases)}.db", layout=layout_))
    return runlog.Store(PostgresBackend(pg_support.store_url(), layout=layout_))


def _record(store: runlog.Store, tokens: list[tuple[str, str]], *, hints: bool = True,
            run_id: str | None = None) -> str:
    """One chat-model run streaming ``tokens`` (text, chunk shape); without ``hints`` the
    writer gets no parts for the chunk tokens (how it was before the hint)."""
    run = store.start_run("model", "chat_model", run_id=run_id or str(uuid.uuid4()), time=1)
    if not hints:
        put = store.writer.put

        def strip(p: Any) -> None:
            put(p._replace(parts=None) if p.parts is not None
                and p.parts[0] == layout.TEMPLATED else p)
        store.writer.put = strip  # type: ignore[method-assign]
    for i, (text, shape) in enumerate(tokens):
        run.token(text, _chunk(text, shape), time=2 + i)
    run.end(None, time=100)
    store.flush()
    return run.id


def _rows(store: runlog.Store) -> list[tuple[int, str]]:
    conn = sqlite3.connect(store.backend.location)
    try:
        return list(conn.execute("SELECT code, body FROM events ORDER BY seq"))
    finally:
        conn.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_chunk_fitting_its_template_is_stored_without_a_search(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the hint the writer never searches a token that fits: ``fit_template``
    raising changes nothing, and the tokens after the first are code-6 rows."""
    if kind == "postgres":
        pg_support.ensure_server()
    store = _open(kind, tmp_path)
    wide = _open(kind, tmp_path, "wide")
    try:
        def no_search(*args: Any) -> Any:
            raise AssertionError("fit_template called")
        monkeypatch.setattr(layout, "fit_template", no_search)
        tokens = [("tok", "same"), (" ", "same"), ("a\"b", "same"), ("", "same")]
        rid = _record(store, tokens)
        assert store.writer.failures == 0
        assert store.writer.rejections == 0
        monkeypatch.undo()
        _record(wide, tokens)
        got = [e.raw for e in store.events(rid)]
        assert len(got) == 6
        assert [e.raw.replace(e.run_id.encode(), b"") for e in wide.events()] == [
            r.replace(rid.encode(), b"") for r in got]
        if kind == "sqlite":
            assert [c for c, _ in _rows(store)] == [layout.START, layout.STREAM] + [
                layout.TEMPLATED] * 3 + [layout.END]
        assert store.verify().ok
    finally:
        store.close()
        wide.close()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_texts, st.sampled_from(["same", "other", "list"])),
                min_size=1, max_size=10))
def test_hinted_rows_are_the_searched_rows(tmp_path: Path,
                                           tokens: list[tuple[str, str]]) -> None:
    """On tokens that do not occur elsewhere in their chunk, the rows written with the
    hint are the rows the search writes (same codes, same bodies)."""
    stores = [_open("sqlite", tmp_path) for _ in range(2)]
    try:
        rid = str(uuid.UUID(int=next(_cases)))  # the same run id in both
        for s, hints in zip(stores, (True, False), strict=True):
            _record(s, tokens, hints=hints, run_id=rid)
        assert _rows(stores[0]) == _rows(stores[1])
    finally:
        for s in stores:
            s.close()


_forged = st.one_of(st.binary(max_size=8), _texts.map(lambda t: runlog.codec.encode(t)),
                    st.just(b'"'), st.just(b'"\x00"'), st.just(b""))


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(st.tuples(_texts, st.sampled_from(["same", "other", "list"]),
                                 st.none() | _forged), min_size=1, max_size=10))
def test_a_wrong_hint_changes_no_byte(kind: str,
                                      events: list[tuple[str, str, bytes | None]]) -> None:
    """Whatever token the hint names (another token, not JSON, a NUL, nothing), every
    event reads back as the bytes recorded, from a cold reader too, and verifies."""
    if kind == "postgres":
        pg_support.ensure_server()
    with tempfile.TemporaryDirectory() as d:
        store = _open(kind, Path(d))
        try:
            run = store.start_run("model", "chat_model", time=1)
            store.flush()
            caught: list[Any] = []
            put = store.writer.put
            store.writer.put = caught.append  # type: ignore[method-assign]
            for i, (text, shape, _) in enumerate(events):
                run.token(text, _chunk(text, shape), time=2 + i)
            store.writer.put = put  # type: ignore[method-assign]
            forged = [p if hint is None else p._replace(parts=(layout.TEMPLATED, hint))
                      for p, (_, _, hint) in zip(caught, events, strict=True)]
            # in two batches: a template written in an earlier batch, and in this one
            half = len(forged) // 2
            for batch in (forged[:half], forged[half:]):
                if batch:
                    store.writer.backend.append(batch, store.writer.info, None)
            want = [(p.raw, p.digest) for p in forged]
            assert [(e.raw, e.digest) for e in store.events(run.id, digests=True)][1:] == want
            if kind == "sqlite":
                with runlog.open(store.backend.location, create=False) as cold:
                    assert [e.raw for e in cold.events(run.id)][1:] == [r for r, _ in want]
            assert store.verify().ok
        finally:
            store.close()
