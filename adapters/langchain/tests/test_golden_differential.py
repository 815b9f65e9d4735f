"""THE differential test over the golden scenarios (issues 4 and 6).

For every scenario in ``../shared/langchain/golden`` (beside the project root) and
every call it pins (the primary ``astream_log``/``astream_events`` kwargs and each
extra run), LangChain runs
the scenario live with the Recorder attached in the same call; the run is then
replayed from the store by ``runlog_langchain`` and compared item by item with ``==``:
same run ids, same timestamps (the clock is frozen for both, see the helpers), same ops,
same exception. Scenarios whose parallel branches interleave nondeterministically are
compared per run. The core dict view (``store.replay(view=...)``) is compared too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lc_diff_helpers import (
    GOLDEN,
    assert_item_equal,
    assert_same_errors,
    frozen_clock,
    load_scenario,
    per_run,
    replay,
    run_live,
)

import runlog

pytestmark = pytest.mark.anyio

FILES = sorted(GOLDEN.glob("*.json")) if GOLDEN.is_dir() else []


def _calls(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    calls = [("log", dict(data["astream_log_kwargs"]))]
    ev = dict(data["astream_events_kwargs"])
    ev.pop("version", None)
    calls.append(("events", ev))
    for extra in data.get("extra_runs") or []:
        kw = dict(extra["kwargs"])
        kw.pop("version", None)
        calls.append(("log" if extra["api"] == "astream_log" else "events", kw))
    return calls


CASES = [
    pytest.param(f, api, kw, id=f"{f.stem}-{api}-{i}")
    for f in FILES
    for i, (api, kw) in enumerate(_calls(load_scenario(f)))
]


@pytest.mark.skipif(not FILES, reason="golden fixtures not present")
@pytest.mark.parametrize(("path", "api", "kwargs"), CASES)
async def test_replay_equals_live(path: Path, api: str, kwargs: dict[str, Any]) -> None:
    data = load_scenario(path)
    ns = data["ns"]
    store = runlog.open(":memory:")
    try:
        with frozen_clock() as clock:
            live, live_err, root = await run_live(ns["build"](), ns["INPUT"], ns["CONFIG"],
                                                  api, kwargs, store, clock)
        if data["order_deterministic"]:
            got, err = await replay(store, root, api, kwargs, live=live)
            assert len(got) == len(live)
        else:
            got, err = await replay(store, root, api, kwargs)
            assert per_run(got, api) == per_run(live, api)
        assert_same_errors(err, live_err)
        _check_core_view(store, root, api, kwargs, live)
    finally:
        store.close()


def _check_core_view(store: runlog.Store, root: str, api: str, kwargs: dict[str, Any],
                     live: list[Any]) -> None:
    """``store.replay(view=...)`` (the core, no LangChain types involved) agrees too."""
    kw = dict(kwargs)
    names = ("include_names", "include_types", "include_tags", "exclude_names",
             "exclude_types", "exclude_tags")
    flt = runlog.Filter(**{k: kw.pop(k) for k in names if k in kw}) if any(
        k in kw for k in names) else None
    items = list(store.replay(root, view="log" if api == "log" else "events", filter=flt,
                              **kw))
    assert len(items) == len(live)
    for i, (got, want) in enumerate(zip(items, live, strict=True)):
        if api == "log":
            # the core uses the runlog codec as the diff equality key; same ops here
            assert got.ops == want.ops, f"item {i}"
        else:
            assert_item_equal(got, want, i)
