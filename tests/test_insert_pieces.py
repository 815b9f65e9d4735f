"""The writer's INSERTs in power-of-two row counts (``runlog.store.sqlite._pieces``).

A batch of any size is written as a few multi-row INSERTs whose texts SQLite's
statement cache keeps, instead of one statement whose text is new for nearly every
batch and parsed anew (~5 k instructions per row). What is stored must not change:
every row, in order, with the seqs of one statement.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import runlog
from runlog.store import sqlite as sqlite_module
from runlog.store.base import Pending
from runlog.store.sqlite import SQLiteBackend, _pieces


@given(st.integers(min_value=0, max_value=2100), st.sampled_from([6, 8]))
def test_pieces_cover_the_rows_in_order_in_powers_of_two(rows: int, width: int) -> None:
    values = list(range(rows * width))
    pieces = list(_pieces(values, width))
    assert [v for _, part in pieces for v in part] == values
    counts = [n for n, _ in pieces]
    assert all(n & (n - 1) == 0 and n > 0 for n in counts)
    assert counts == sorted(counts, reverse=True)
    assert len(set(counts)) == len(counts)  # at most one statement per power of two
    assert all(len(part) == n * width for n, part in pieces)


def _queued(store: runlog.Store, tokens: int) -> tuple[str, list[Pending]]:
    """The events of a run of ``tokens`` tokens, as the recorder queues them."""
    queued: list[Pending] = []
    store.writer.put = queued.append  # type: ignore[method-assign]
    try:
        run = store.start_run("model", "llm")
        for i in range(tokens):
            run.token(f"t{i}", {"i": i})
        run.end("done")
    finally:
        del store.writer.put
    return run.id, queued


@pytest.mark.parametrize("layout", ["compact", "wide"])
@pytest.mark.parametrize("tokens", [0, 1, 5, 29, 62, 999, 1_400])
def test_one_append_of_any_size_stores_every_event_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str, tokens: int) -> None:
    store = runlog.Store(SQLiteBackend(tmp_path / "p.db", layout=layout))
    try:
        run_id, queued = _queued(store, tokens)
        backend = store.backend
        assert isinstance(backend, SQLiteBackend)
        sizes: list[int] = []
        name = "_insert_compact_sql" if backend.compact else "_insert_sql"
        make = getattr(sqlite_module, name)

        def counting(rows: int) -> str:
            sizes.append(rows)
            return make(rows)  # type: ignore[no-any-return]
        monkeypatch.setattr(sqlite_module, name, counting)
        last = backend.append(queued, store.writer.info, None)
        monkeypatch.undo()
        assert last == len(queued)
        events = list(store.events(run_id))
        assert [e.raw for e in events] == [p.raw for p in queued]
        assert [e.seq for e in events] == list(range(1, len(queued) + 1))
        # one statement per set bit of the batch's size (per 1,000 rows): each of a
        # power-of-two row count
        assert sum(sizes) == len(queued)
        assert all(n & (n - 1) == 0 for n in sizes)
        assert len(sizes) == sum(bin(n).count("1") for n in
                                 (min(1_000, len(queued) - i)
                                  for i in range(0, len(queued), 1_000)))
        assert store.verify().ok
    finally:
        store.close()
