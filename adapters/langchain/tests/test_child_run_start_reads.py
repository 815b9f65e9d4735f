"""A LangChain child run's id is LangChain's own, new: its start makes no store read
(the root's, whose id the application may have chosen, still does), and a child id the
application reuses from the store is still kept out of it (by the store's index)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import runlog_langchain
from langchain_core.runnables import RunnableConfig, RunnableLambda

import runlog


def _chain() -> Any:
    return (RunnableLambda(lambda x: x + 1) | RunnableLambda(lambda x: x * 2)
            | RunnableLambda(lambda x: str(x)))


def test_only_the_root_start_reads_the_store(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    with runlog.open(tmp_path / "runs.db") as store:
        reads: list[str] = []
        real = store.backend.get_run

        def counted(run_id: str) -> Any:
            reads.append(run_id)
            return real(run_id)

        monkeypatch.setattr(store.backend, "get_run", counted)
        with runlog_langchain.record(store) as rec:
            assert _chain().invoke(1) == "4"
        (root,) = rec.root_ids
        assert reads == [root]
        assert len({e.run_id for e in store.events()}) == 4  # the root and its 3 steps


def test_a_child_id_reused_from_the_store_stays_out_of_it(tmp_path: Path) -> None:
    fixed = uuid.UUID(int=42)
    inner = RunnableLambda(lambda x: x)

    def outer(x: str, config: RunnableConfig) -> str:
        return inner.invoke(x, {**config, "run_id": fixed})  # the app's own child id

    with runlog.open(tmp_path / "runs.db") as store:
        with runlog_langchain.record(store):
            RunnableLambda(outer).invoke("first")
        assert store.run_info(str(fixed)).name == "RunnableLambda"
        before = [e.raw for e in store.events() if e.run_id == str(fixed)]
    with runlog.open(tmp_path / "runs.db") as store:  # a later process: nothing in memory
        with runlog_langchain.record(store) as rec:
            assert RunnableLambda(outer).invoke("second") == "second"  # the app runs on
        assert rec.failures >= 1
        assert [e.raw for e in store.events() if e.run_id == str(fixed)] == before
        assert len(rec.root_ids) == 1  # the second call's root is stored, its child not
        assert len([e for e in store.events() if e.run_id == rec.root_ids[0]]) == 2
        assert store.verify().ok


def test_the_streaming_handler_check_is_the_protocols_remembered_per_class(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.tracers._streaming import _StreamingCallbackHandler
    from langchain_core.tracers.event_stream import _AstreamEventsCallbackHandler
    from langchain_core.tracers.log_stream import LogStreamCallbackHandler
    from runlog_langchain import recorder as rec_mod

    monkeypatch.setattr(rec_mod, "_STREAMING", {})
    # made without their __init__, which opens an event loop (it is never closed)
    handlers = [object.__new__(cls) for cls in (
        LogStreamCallbackHandler, _AstreamEventsCallbackHandler, BaseCallbackHandler)]
    assert [rec_mod._is_streaming(h) for h in handlers] == [
        isinstance(h, _StreamingCallbackHandler) for h in handlers] == [True, True, False]
    remembered = {type(h): r for h, r in zip(handlers, [True, True, False], strict=True)}
    assert remembered == rec_mod._STREAMING
