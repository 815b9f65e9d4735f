"""Differential suite: each scenario runs live under ``runlog_langgraph.record`` and its
replay from the log must equal (``==``) what LangGraph's own ``stream`` yielded, item
for item (message ids, tool_call ids and interrupts included), for every stream mode
alone, all modes together, and both ``subgraphs`` settings; a failed graph's replay
raises the same exception after the same items.

Replay and live are the same run, so parallel branches are compared in the order that
run produced them. Where two *different* live runs are compared (recording changes
nothing; one recording replays any mode), parallel scenarios are compared per
namespace and task as multisets, because LangGraph's thread pool may finish the
branches of one step in any order.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import runlog_langgraph as rlg
from lg_helpers import (
    areplay_call,
    config_for,
    norm,
    record_calls,
    replay_call,
    run_calls,
    same,
)
from lg_scenarios import SCENARIOS, Scenario

import runlog

SELECTIONS: list[Any] = [*rlg.ALL_MODES, list(rlg.ALL_MODES), ["updates", "messages", "custom"]]
IDS = [s if isinstance(s, str) else "+".join(s) for s in SELECTIONS]


def _same_error(live: BaseException | None, replayed: BaseException | None) -> None:
    if live is None:
        assert replayed is None, replayed
        return
    assert type(replayed) is type(live)
    assert replayed.args == live.args


@pytest.mark.parametrize("subgraphs", [False, True], ids=["flat", "subgraphs"])
@pytest.mark.parametrize("stream_mode", SELECTIONS, ids=IDS)
@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_replay_equals_live(lg_store: runlog.Store, sc: Scenario, stream_mode: Any,
                            subgraphs: bool) -> None:
    rec, live = record_calls(lg_store, sc, stream_mode, subgraphs)
    for (items, err), rid in zip(live, rec.graph_ids, strict=True):
        got, got_err = replay_call(lg_store, rid)  # defaults: what the app asked
        assert got == items or same(got, items)  # same: only a failed task's exception
        _same_error(err, got_err)
        # the same arguments given explicitly give the same items
        again, _ = replay_call(lg_store, rid, stream_mode=stream_mode, subgraphs=subgraphs)
        assert again == items or same(again, items)
    if sc.raises is not None:
        assert isinstance(live[-1][1], sc.raises)


def _by_namespace(items: list[Any]) -> Counter[str]:
    return Counter(repr(norm(i)) for i in items)


def _compare(sc: Scenario, a: list[Any], b: list[Any]) -> None:
    if sc.parallel:
        assert _by_namespace(a) == _by_namespace(b)
    else:
        assert same(norm(a), norm(b))


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_recording_changes_nothing(lg_store: runlog.Store, sc: Scenario) -> None:
    """The application receives what it receives without the recorder."""
    for mode, sub in (("values", False), (["updates", "custom", "messages"], True),
                      ("updates", False)):
        plain = run_calls(sc, sc.build(), mode, sub)
        _rec, recorded = record_calls(lg_store, sc, mode, sub)
        for (p_items, p_err), (r_items, r_err) in zip(plain, recorded, strict=True):
            _compare(sc, p_items, r_items)
            assert type(p_err) is type(r_err)


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_one_recording_replays_every_mode(lg_store: runlog.Store, sc: Scenario) -> None:
    """Recorded while the app asked only ``values``: every other mode and subgraphs
    replay as a live run asking for them gives (volatile ids and times aside)."""
    rec, _ = record_calls(lg_store, sc, "values", False)
    for mode, sub in (("updates", False), ("custom", True), ("messages", True),
                      (["updates", "values"], True), ("tasks", False)):
        live = run_calls(sc, sc.build(), mode, sub)
        for (items, _err), rid in zip(live, rec.graph_ids, strict=True):
            got, _ = replay_call(lg_store, rid, stream_mode=mode, subgraphs=sub)
            _compare(sc, got, items)


async def _arun_calls(sc: Scenario, graph: Any, stream_mode: Any, subgraphs: bool
                      ) -> list[tuple[list[Any], BaseException | None]]:
    out: list[tuple[list[Any], BaseException | None]] = []
    for inp in sc.calls:
        items: list[Any] = []
        try:
            async for item in graph.astream(inp, config_for(sc), stream_mode=stream_mode,
                                            subgraphs=subgraphs):
                items.append(item)
        except Exception as e:
            out.append((items, e))
        else:
            out.append((items, None))
    return out


@pytest.mark.anyio
@pytest.mark.parametrize(("stream_mode", "subgraphs"), [(list(rlg.ALL_MODES), True),
                                                   ("updates", False), ("messages", True)],
                         ids=["all-subgraphs", "updates-flat", "messages-subgraphs"])
@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_async_replay_equals_live(lg_store: runlog.Store, sc: Scenario,
                                        stream_mode: Any, subgraphs: bool) -> None:
    """The same with ``astream`` live and ``runlog_langgraph.astream`` replaying."""
    graph = sc.build()
    async with rlg.arecord(lg_store) as rec:
        live = await _arun_calls(sc, graph, stream_mode, subgraphs)
    assert rec.failures == 0, rec.last_error
    for (items, err), rid in zip(live, rec.graph_ids, strict=True):
        got, got_err = await areplay_call(lg_store, rid)
        assert got == items or same(got, items)
        _same_error(err, got_err)
