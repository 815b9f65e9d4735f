"""``stream(..., version="v2")``: typed ``StreamPart`` dicts are recorded like any call
(the application gets exactly what LangGraph gives it) and replay ``==`` item for item,
for every mode alone, all together, a list, and both ``subgraphs`` settings; and one
recording replays in either format: a v1 call as v2 and a v2 call as v1.

Recording and replay are compared on the same run. A recording replayed in the other
format is compared with a *second* live run in that format, per namespace and task for
the parallel scenarios (thread-pool order), with volatile ids and times blanked
(``lg_helpers.norm``), as in test_lg_differential.py.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import runlog_langgraph as rlg
from lg_helpers import areplay_call, config_for, norm, replay_call, run_calls, same
from lg_scenarios import SCENARIOS, Scenario

import runlog

SELECTIONS: list[Any] = [*rlg.ALL_MODES, list(rlg.ALL_MODES), ["updates", "messages", "custom"]]
IDS = [s if isinstance(s, str) else "+".join(s) for s in SELECTIONS]


def _run(sc: Scenario, graph: Any, stream_mode: Any, subgraphs: bool, version: str
         ) -> list[tuple[list[Any], BaseException | None]]:
    return run_calls(sc, graph, stream_mode, subgraphs, version=version)


def _record(store: runlog.Store, sc: Scenario, stream_mode: Any, subgraphs: bool,
            version: str) -> tuple[rlg.GraphRecorder, list[tuple[list[Any], Any]]]:
    graph = sc.build()
    with rlg.record(store) as rec:
        out = _run(sc, graph, stream_mode, subgraphs, version)
    assert rec.failures == 0, rec.last_error
    assert len(rec.graph_ids) == len(sc.calls)
    return rec, out


def _compare(sc: Scenario, a: list[Any], b: list[Any]) -> None:
    if sc.parallel:
        assert Counter(repr(norm(i)) for i in a) == Counter(repr(norm(i)) for i in b)
    else:
        assert same(norm(a), norm(b))


@pytest.mark.parametrize("subgraphs", [False, True], ids=["flat", "subgraphs"])
@pytest.mark.parametrize("stream_mode", SELECTIONS, ids=IDS)
@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_v2_replay_equals_live(lg_store: runlog.Store, sc: Scenario, stream_mode: Any,
                               subgraphs: bool) -> None:
    rec, live = _record(lg_store, sc, stream_mode, subgraphs, "v2")
    for (items, err), rid in zip(live, rec.graph_ids, strict=True):
        if isinstance(stream_mode, list):
            assert items, "LangGraph gave no part"
        assert all(type(i) is dict and {"type", "ns", "data"} <= i.keys() for i in items)
        got, got_err = replay_call(lg_store, rid)  # defaults: what the app asked, as v2
        assert got == items or same(got, items)  # same: only a failed task's exception
        assert type(got_err) is type(err)
        if err is not None:
            assert got_err.args == err.args
        again, _ = replay_call(lg_store, rid, stream_mode=stream_mode, subgraphs=subgraphs,
                           version="v2")
        assert again == items or same(again, items)


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_v2_recording_changes_nothing(lg_store: runlog.Store, sc: Scenario) -> None:
    """What the application receives from a v2 call is what it receives unrecorded."""
    for mode, sub in (("values", False), (list(rlg.ALL_MODES), True)):
        plain = _run(sc, sc.build(), mode, sub, "v2")
        _rec, recorded = _record(lg_store, sc, mode, sub, "v2")
        for (p_items, p_err), (r_items, r_err) in zip(plain, recorded, strict=True):
            _compare(sc, p_items, r_items)
            assert type(p_err) is type(r_err)


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_one_format_replays_as_the_other(lg_store: runlog.Store, sc: Scenario) -> None:
    """A v1 recording replays as v2 and a v2 recording as v1, as live calls in that
    format give (another live run: volatile values blanked, parallel per task)."""
    for rec_v, as_v in (("v1", "v2"), ("v2", "v1")):
        for mode, sub in (("values", False), (list(rlg.ALL_MODES), True),
                          ("updates", True)):
            rec, _ = _record(lg_store, sc, "updates", False, rec_v)
            live = _run(sc, sc.build(), mode, sub, as_v)
            for (items, err), rid in zip(live, rec.graph_ids, strict=True):
                got, got_err = replay_call(lg_store, rid, stream_mode=mode, subgraphs=sub,
                                       version=as_v)
                _compare(sc, got, items)
                assert type(got_err) is type(err)


@pytest.mark.anyio
@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_v2_async(lg_store: runlog.Store, sc: Scenario) -> None:
    graph = sc.build()
    async with rlg.arecord(lg_store) as rec:
        live: list[tuple[list[Any], Any]] = []
        for inp in sc.calls:
            items: list[Any] = []
            err: BaseException | None = None
            try:
                async for item in graph.astream(inp, config_for(sc),
                                                stream_mode=list(rlg.ALL_MODES),
                                                subgraphs=True, version="v2"):
                    items.append(item)
            except Exception as e:
                err = e
            live.append((items, err))
    assert rec.failures == 0, rec.last_error
    for (items, err), rid in zip(live, rec.graph_ids, strict=True):
        got, got_err = await areplay_call(lg_store, rid)
        assert got == items or same(got, items)
        assert type(got_err) is type(err)


def test_v2_invoke_and_bad_version(lg_store: runlog.Store) -> None:
    """``invoke(..., version="v2")`` goes through ``stream(version="v2")``: recorded,
    and its ``GraphOutput`` unchanged; a version replay does not know is refused."""
    sc = next(s for s in SCENARIOS if s.name == "interrupt_resume")
    plain = sc.build().invoke(sc.calls[0], config_for(sc), version="v2")
    with rlg.record(lg_store) as rec:
        got = sc.build().invoke(sc.calls[0], config_for(sc), version="v2")
    assert rec.failures == 0
    assert norm(got.value) == norm(plain.value)
    assert [norm(i) for i in got.interrupts] == [norm(i) for i in plain.interrupts]
    (rid,) = rec.graph_ids
    parts = list(rlg.stream(lg_store, rid))
    assert parts[-1]["data"] == got.value
    assert parts[-1]["interrupts"] == got.interrupts
    with pytest.raises(ValueError, match="version"):
        list(rlg.stream(lg_store, rid, version="v3"))
