"""``Recorder.start(fresh_id=True)``: an id a framework just made (a LangChain child
run's) skips the per-start store read, and a reused one is still refused, by the
store's one-start-per-id index when the writer commits it: that start, the run's later
events and every run started under it are dropped, the old run keeps its events, and
the producer is told (EventRejectedError) at its next call or flush."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from conftest import make_store

import runlog
from runlog.errors import DuplicateRunError, EventRejectedError


def test_a_fresh_id_makes_no_store_read(store: runlog.Store,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    real = store.backend.get_run

    def counted(run_id: str) -> Any:
        reads.append(run_id)
        return real(run_id)

    monkeypatch.setattr(store.backend, "get_run", counted)
    with store.run("root") as root:
        store.recorder.start("given", run_id="given-id", parent=root).end()
        store.recorder.start("fresh", run_id="fresh-id", parent=root, fresh_id=True).end()
    assert reads == ["given-id"]
    # the in-process checks still hold for a fresh id: open or just ended here
    with store.run("again") as again, pytest.raises(DuplicateRunError):
        store.recorder.start("x", run_id="fresh-id", parent=again, fresh_id=True)


def _kinds(store: runlog.Store, run_id: str) -> list[str]:
    return [e.kind for e in store.events() if e.run_id == run_id]


def test_a_reused_fresh_id_is_refused_by_the_store_with_what_runs_under_it(
        backend_kind: str, tmp_path: Path) -> None:
    if backend_kind == "memory":
        pytest.skip("a memory store has one handle: the id would be caught in-process")
    with make_store(backend_kind, tmp_path) as earlier, earlier.run("old", run_id="old-id") as r:
        r.stream("kept")
    store = make_store(backend_kind, tmp_path)  # another process, later: nothing in memory
    made: dict[str, runlog.Run] = {}

    def record() -> None:
        with store.run("root") as root:
            made["root"] = root
            dup = store.recorder.start("dup", run_id="old-id", parent=root, fresh_id=True)
            dup.stream("lost")
            made["grandchild"] = grandchild = store.recorder.start("under", parent=dup)
            grandchild.stream("lost too")
            grandchild.end()
            made["sibling"] = sibling = store.recorder.start("sibling", parent=root)
            sibling.stream("fine")
            sibling.end()
            with contextlib.suppress(EventRejectedError):  # if the writer was quick
                dup.end()

    try:
        with pytest.raises(EventRejectedError, match="old-id"):  # at the root's end
            record()
        root, grandchild, sibling = made["root"], made["grandchild"], made["sibling"]
        # the old run is as it was; the refused run's events and its child's are not
        # stored; the rest of the trace is
        assert _kinds(store, "old-id") == ["start", "stream", "end"]
        assert [e.data for e in store.events() if e.run_id == "old-id" and e.kind == "stream"
                ] == ["kept"]
        assert _kinds(store, grandchild.id) == []
        assert _kinds(store, sibling.id) == ["start", "stream", "end"]
        assert _kinds(store, root.id) == ["start", "end"]
        assert store.writer.rejected(grandchild.id) is not None
        assert "whose start the store refused" in str(store.writer.rejected(grandchild.id))
        assert store.verify().ok
    finally:
        store.close()
