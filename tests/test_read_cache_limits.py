"""A reader whose header and template caches fill up empties them and reads the page's
runs and templates again: every envelope still joins to the bytes written (a cache
emptied after a page's lookups used to leave its earlier runs unjoined)."""

from __future__ import annotations

from pathlib import Path

import pytest

import runlog
from runlog.store import sqlite as sqlite_store
from runlog.store.base import EventQuery


def test_full_caches_still_join_every_row(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "runs.db"
    with runlog.open(path) as store:
        for i in range(6):
            with store.run(f"model-{i}", run_type="chat_model") as run:
                for tok in ("Hel", "lo", "!"):  # a chunk a token at a time: code 6
                    run.token(tok, {"type": "AIMessageChunk", "content": tok, "n": i})
    with runlog.open(path) as store:
        written = [(e.seq, e.raw) for e in store.events()]
    monkeypatch.setattr(sqlite_store, "_KEY_CACHE", 2)
    with runlog.open(path) as store:
        for _ in range(2):  # cold, then with the caches at their limit
            got: list[tuple[int, bytes]] = []
            after = 0
            while True:  # pages of 4 rows, each holding rows of several runs
                page, after = store.backend.read(EventQuery(after=after, limit=4))
                got += [(e.seq, e.raw) for e in page]
                if len(page) < 4:
                    break
            assert got == written
