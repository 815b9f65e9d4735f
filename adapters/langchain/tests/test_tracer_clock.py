"""The recorder reads the clock LangChain's tracer reads, first thing in each callback
(issue 16, item 3): under a frozen clock the replayed ``start_time``/``end_time`` are
LangChain's, to the microsecond, with no ``clock=`` argument.

A float ``time_ns`` (freezegun's) would turn the instant ``.123456`` into ``.123455``
and a millisecond boundary like ``.123000`` into ``.122``; reading
``datetime.now(timezone.utc)`` where LangChain's tracer reads it, converted with integer
arithmetic, keeps it exact.
"""

from __future__ import annotations

import copy
import datetime as dt
import warnings
from typing import Any
from unittest import mock

import pytest
import runlog_langchain
from freezegun import freeze_time
from langchain_core.runnables import RunnableLambda
from runlog_langchain.recorder import tracer_clock

import runlog
from runlog.events import datetime_to_micros, now_micros

pytestmark = pytest.mark.anyio

INSTANTS = ["2026-11-22T18:51:19.123456+00:00", "2026-11-22T18:51:19.123000+00:00",
            "2026-11-22T18:51:19.999999+00:00"]


def _chain() -> Any:
    def child(x: str) -> str:
        return x + "!"

    def tool(x: str) -> str:
        return x * 2

    return (RunnableLambda(child) | RunnableLambda(tool)).with_config(run_name="root")


async def _live_and_replay(api: str) -> tuple[list[Any], list[Any], runlog.Store, str]:
    store = runlog.open(":memory:")
    rec = runlog_langchain.Recorder(store)  # no clock=: the tracer's
    cfg: Any = {"callbacks": [rec]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if api == "log":
            live = [copy.deepcopy(p) async for p in _chain().astream_log("a", cfg)]
        else:
            live = [e async for e in _chain().astream_events("a", cfg, version="v2")]
    await store.aflush()
    assert rec.failures == 0, rec.last_error
    rid = rec.root_ids[0]
    if api == "log":
        got = [copy.deepcopy(p) async for p in runlog_langchain.astream_log(store, rid)]
    else:
        got = [e async for e in runlog_langchain.astream_events(store, rid)]
    return live, got, store, rid


def _times(patches: list[Any]) -> list[str]:
    return [op["value"] if "time" in op["path"] else op["value"]["start_time"]
            for p in patches for op in p.ops
            if op["path"].endswith("_time") or (op["path"].count("/") == 2
                                                and op["path"].startswith("/logs/"))]


@pytest.mark.parametrize("instant", INSTANTS)
@pytest.mark.parametrize("api", ["log", "events"])
async def test_under_freezegun_replayed_times_are_langchains(api: str, instant: str) -> None:
    with freeze_time(instant):
        live, got, store, rid = await _live_and_replay(api)
    assert got == live
    want = datetime_to_micros(dt.datetime.fromisoformat(instant))
    assert {e.time_us for e in store.events(rid, descendants=True)} == {want}
    if api == "log":
        times = _times(live)
        assert len(times) == 4  # two children, start and end each
        assert set(times) == {dt.datetime.fromisoformat(instant)
                              .isoformat(timespec="milliseconds")}
    store.close()


async def test_a_patched_tracer_datetime_is_followed() -> None:
    """Any replacement of the tracer's clock, not only freezegun's, reaches the recorder."""
    frozen = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
            return frozen

    with mock.patch("langchain_core.tracers.core.datetime", Frozen):
        assert tracer_clock() == datetime_to_micros(frozen)
        live, got, store, rid = await _live_and_replay("log")
    assert got == live
    assert {e.time_us for e in store.events(rid, descendants=True)} == {
        datetime_to_micros(frozen)}
    store.close()


def test_unpatched_the_tracer_clock_is_the_system_clock() -> None:
    before = now_micros()
    t = tracer_clock()
    after = now_micros()
    assert before <= t <= after
    # and the slow path (a replaced datetime) agrees with the fast one on a real clock
    with mock.patch("langchain_core.tracers.core.datetime",
                    type("Real", (dt.datetime,), {})):
        t2 = tracer_clock()
    assert after <= t2 <= now_micros()


def test_a_failing_clock_is_counted_and_replaced() -> None:
    def broken() -> int:
        raise RuntimeError("no clock")

    store = runlog.open(":memory:")
    rec = runlog_langchain.Recorder(store, clock=broken)
    assert RunnableLambda(lambda x: x + 1).invoke(1, {"callbacks": [rec]}) == 2
    store.flush()
    assert rec.failures == 2  # start and end
    assert [r.status for r in store.runs()] == ["ok"]
    store.close()
