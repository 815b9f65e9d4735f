"""Attaching the Recorder changes nothing the application sees.

For every golden scenario: ``astream`` chunks, the exception, and LangChain's own
``astream_events`` stream are the same with and without the recorder (run ids differ
between two calls, so they are renumbered by first appearance). A recorder whose store
fails never raises into the application; it counts the failures.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda
from lc_diff_helpers import GOLDEN, load_scenario
from runlog_langchain import Recorder

import runlog

pytestmark = pytest.mark.anyio
FILES = sorted(GOLDEN.glob("*.json")) if GOLDEN.is_dir() else []
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _renumber(obj: Any, ids: dict[str, str]) -> Any:
    if isinstance(obj, str):
        return _UUID.sub(lambda m: ids.setdefault(m.group(0), f"<id{len(ids)}>"), obj)
    if isinstance(obj, dict):
        return {k: _renumber(v, ids) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_renumber(v, ids) for v in obj]
    if isinstance(obj, BaseException):
        return (type(obj).__name__, _renumber(str(obj), ids))
    if hasattr(obj, "model_dump"):
        return (type(obj).__name__, _renumber(obj.model_dump(), ids))
    return obj


async def _collect(runnable: Any, value: Any, config: Any, api: str) -> Any:
    out: list[Any] = []
    err: BaseException | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if api == "astream":
                async for c in runnable.astream(value, config):
                    out.append(c)
            else:
                async for ev in runnable.astream_events(value, config, version="v2"):
                    out.append(ev)
        except Exception as e:
            err = e
    return _renumber([out, err], {})


@pytest.mark.skipif(not FILES, reason="golden fixtures not present")
@pytest.mark.parametrize("api", ["astream", "astream_events"])
@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
async def test_outputs_unchanged_by_recording(path: Path, api: str) -> None:
    data = load_scenario(path)
    ns = data["ns"]
    if not data["order_deterministic"]:
        pytest.skip("interleaving differs run to run even without the recorder")
    plain = await _collect(ns["build"](), ns["INPUT"], ns["CONFIG"], api)
    store = runlog.open(":memory:")
    try:
        rec = Recorder(store)
        cfg = dict(ns["CONFIG"] or {})
        cfg["callbacks"] = [rec, *(cfg.get("callbacks") or [])]
        recorded = await _collect(ns["build"](), ns["INPUT"], cfg, api)
        assert rec.failures == 0
    finally:
        store.close()
    assert recorded == plain


def test_a_failing_store_never_reaches_the_application() -> None:
    store = runlog.open(":memory:")
    store.close()  # every write now fails
    rec = Recorder(store)
    chain = RunnableLambda(lambda x: x + 1) | RunnableLambda(lambda x: x * 2)
    assert chain.invoke(1, config={"callbacks": [rec]}) == 4
    assert list(chain.stream(1, config={"callbacks": [rec]})) == [4]
    assert rec.failures > 0
    assert rec.last_error is not None


def test_sync_invoke_in_threads_records_the_tree() -> None:
    """The sync callback manager (RunnableParallel runs branches in threads)."""
    import runlog_langchain
    from langchain_core.runnables import RunnableParallel

    chain = RunnableLambda(lambda x: x + 1).with_config(run_name="inc") | RunnableParallel(
        a=RunnableLambda(lambda x: x * 2).with_config(run_name="dbl"),
        b=RunnableLambda(lambda x: x * 3).with_config(run_name="tri"),
    )
    store = runlog.open(":memory:")
    try:
        rec = Recorder(store)
        assert chain.invoke(1, config={"callbacks": [rec], "max_concurrency": 2}) == {
            "a": 4, "b": 6}
        store.flush()
        root = rec.root_ids[0]
        runs = {r.name: r for r in store.trace_runs(root)}
        assert runs["RunnableSequence"].parent_id is None
        assert runs["dbl"].parent_id == runs["RunnableParallel<a,b>"].run_id
        assert all(r.status == "ok" for r in runs.values())
        events = list(runlog_langchain.stream_events(store, root))
        assert events[0]["data"] == {"input": 1}  # the invoke() input, from the stack
        assert events[-1]["event"] == "on_chain_end"
        assert events[-1]["data"] == {"output": {"a": 4, "b": 6}}
        state = store.state_at(root)
        assert state["final_output"] == {"a": 4, "b": 6}
        assert {e["name"] for e in state["logs"].values()} >= {"inc", "dbl", "tri"}
    finally:
        store.close()
