"""The group-commit writer's pacing (``runlog/store/writer.py``).

While events keep coming the writer commits at most once per ``commit_interval``;
a lone event after a quiet spell, a flush and close commit at once. The interval
here is a minute, so "not committed yet" and "committed at once" cannot be confused
by a slow machine: nothing in these tests waits anywhere near that long.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

import runlog
from runlog.store.base import Pending, WriterInfo

MINUTE = 60.0


@pytest.fixture
def paced(tmp_path: Path) -> Iterator[tuple[runlog.Store, list[int]]]:
    """A SQLite store pacing commits a minute apart, and the size of each commit."""
    store = runlog.open(tmp_path / "paced.db", commit_interval=MINUTE)
    sizes: list[int] = []
    append = store.backend.append

    def counting(batch: Sequence[Pending], writer: WriterInfo, hb: int | None) -> int:
        seq = append(batch, writer, hb)
        sizes.append(len(batch))
        return seq

    store.backend.append = counting  # type: ignore[method-assign]
    try:
        yield store, sizes
    finally:
        store.close()


def _until(cond: Callable[[], bool], what: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {limit} s")
        time.sleep(0.005)


def test_a_lone_event_is_committed_at_once(paced: tuple[runlog.Store, list[int]]) -> None:
    store, sizes = paced
    store.start_run("model", "chat_model")
    _until(lambda: sizes == [1], "the first commit")  # not a minute later


def test_a_stream_shares_commits_and_flush_ends_the_wait(
        paced: tuple[runlog.Store, list[int]]) -> None:
    store, sizes = paced
    run = store.start_run("model", "chat_model")
    _until(lambda: sizes == [1], "the first commit")
    for i in range(50):
        run.token(f"t{i}")
    time.sleep(0.2)  # the writer is pacing: a minute from its last commit
    assert sizes == [1]  # the writer holds the first token and waits for more
    store.flush(timeout=20)  # raises if still waiting
    assert sizes == [1, 50]
    assert [e.kind for e in store.events(run_id=run.id)] == ["start"] + ["stream"] * 50


def test_the_end_of_a_root_run_commits_at_once(
        paced: tuple[runlog.Store, list[int]]) -> None:
    store, sizes = paced
    with store.run("chain") as root:
        _until(lambda: sizes == [1], "the first commit")
        root.stream("a")
        root.stream("b")
    # the root's end waits for its commit (flush): nothing is left queued
    assert sum(sizes) == 4
    assert store.writer.pending() == 0


def test_close_commits_what_is_waiting(tmp_path: Path) -> None:
    path = tmp_path / "closing.db"
    store = runlog.open(path, commit_interval=MINUTE)
    run = store.start_run("model", "chat_model")
    store.flush(timeout=20)
    for i in range(10):
        run.token(f"t{i}")
    closer = threading.Thread(target=store.close)
    closer.start()
    closer.join(20)
    assert not closer.is_alive()
    with runlog.open(path, create=False) as again:
        assert len(list(again.events(run_id=run.id))) == 11


def test_zero_interval_commits_as_soon_as_the_writer_is_free(tmp_path: Path) -> None:
    store = runlog.open(tmp_path / "eager.db", commit_interval=0)
    try:
        run = store.start_run("model", "chat_model")
        for i in range(20):
            run.token(f"t{i}")
            store.flush(timeout=20)
        assert len(list(store.events(run_id=run.id))) == 21
    finally:
        store.close()


def test_commits_carry_a_heartbeat_only_when_the_last_is_getting_old(
        tmp_path: Path) -> None:
    """A stream of commits rewrites the writers row once per half heartbeat period, not
    on every commit. The lease here is a minute (a heartbeat period of 15 s), and the
    writer's last heartbeat is moved into the past to stand for the time passing."""
    store = runlog.open(tmp_path / "beats.db", commit_interval=0, lease_seconds=MINUTE)
    beats: list[int | None] = []
    append = store.backend.append

    def spying(batch: Sequence[Pending], writer: WriterInfo, hb: int | None) -> int:
        beats.append(hb)
        return append(batch, writer, hb)

    store.backend.append = spying  # type: ignore[method-assign]
    try:
        run = store.start_run("model", "chat_model")
        for i in range(3):
            run.stream(i)
            store.flush()
        assert beats[0] is not None  # the writer's first commit registers it
        assert beats[1:] == [None] * (len(beats) - 1)
        store.writer._beat_at -= store.writer.heartbeat_seconds / 2
        run.stream(3)
        store.flush()
        assert beats[-1] is not None
    finally:
        store.close()
