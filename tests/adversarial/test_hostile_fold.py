"""Folding a stored run never crashes on chunks that cannot be added (a reader's safety)."""

from __future__ import annotations

import datetime as dt

import runlog


def test_chunks_whose_sum_overflows_fold_like_chunks_that_cannot_be_added() -> None:
    # datetime.max + timedelta raises OverflowError, not TypeError: the log view used to
    # crash on it (found by hypothesis in tests/test_diff.py); now the chunk replaces the
    # accumulated output, as for any pair of chunks that cannot be added.
    with runlog.open(":memory:") as store:
        with store.run("r") as run:
            run.stream(dt.datetime.max)
            run.stream(dt.timedelta(days=1))
            run.end(outputs=None)
        state = store.state_at(run.id)
        assert state is not None
        patches = list(store.replay(run.id, view="log"))
    assert patches
    assert state["final_output"] == dt.timedelta(days=1)
