"""Differential harness: run LangChain live with the Recorder attached, replay, compare.

``run_live`` calls LangChain's own ``astream_log``/``astream_events`` with a
:class:`runlog_langchain.Recorder` first in the callbacks, collecting every item (and
the exception, if any); ``replay`` reads the same run back from the store through
``runlog_langchain``; ``assert_same`` compares them item by item with ``==``, or, for
runs whose parallel branches interleave nondeterministically, per run.

Timestamps: LangChain's tracer and the Recorder each read the clock when *they* are
called, microseconds apart, so millisecond timestamps could differ at a boundary.
``frozen_clock`` pins both to one instant, making ``start_time``/``end_time``
comparable with ``==``.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import runlog_langchain
from runlog_langchain import Recorder

import runlog
from runlog.events import datetime_to_micros

# ../shared beside the project root, so the suite runs from any checkout.
GOLDEN = Path(__file__).resolve().parents[3].parent / "shared" / "langchain" / "golden"
FROZEN = dt.datetime(2026, 11, 22, 18, 51, 19, 146789, tzinfo=dt.UTC)


@contextmanager
def frozen_clock() -> Iterator[Callable[[], int]]:
    class _Frozen(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
            return FROZEN

    with mock.patch("langchain_core.tracers.core.datetime", _Frozen):
        yield lambda: datetime_to_micros(FROZEN)


def load_scenario(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    ns: dict[str, Any] = {}
    exec(compile(data["code"], str(path), "exec", dont_inherit=True), ns)
    data["ns"] = ns
    return data


async def run_live(runnable: Any, value: Any, config: Any, api: str, kwargs: dict[str, Any],
                   store: runlog.Store, clock: Callable[[], int]
                   ) -> tuple[list[Any], BaseException | None, str]:
    rec = Recorder(store, clock=clock)
    cfg = dict(config or {})
    cfg["callbacks"] = [rec, *(cfg.get("callbacks") or [])]
    items: list[Any] = []
    error: BaseException | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if api == "log":
                async for p in runnable.astream_log(value, cfg, **kwargs):
                    items.append(copy.deepcopy(p))
            else:
                async for ev in runnable.astream_events(value, cfg, version="v2", **kwargs):
                    items.append(ev)
        except Exception as e:
            error = e
    await store.aflush()
    assert rec.failures == 0, rec.last_error
    assert len(rec.root_ids) == 1, rec.root_ids
    return items, error, rec.root_ids[0]


async def replay(store: runlog.Store, root_id: str, api: str, kwargs: dict[str, Any],
                 live: list[Any] | None = None) -> tuple[list[Any], BaseException | None]:
    """Replay; with ``live``, each item is compared to the live one as it is yielded
    (diff=False items share state and are only exact when yielded)."""
    items: list[Any] = []
    error: BaseException | None = None
    try:
        if api == "log":
            gen = runlog_langchain.astream_log(store, root_id, **kwargs)
        else:
            gen = runlog_langchain.astream_events(store, root_id, version="v2", **kwargs)
        async for item in gen:
            if live is not None and len(items) < len(live):
                assert_item_equal(item, live[len(items)], len(items))
            items.append(copy.deepcopy(item) if api == "log" else item)
    except AssertionError:
        raise
    except Exception as e:
        error = e
    return items, error


def _comparable(x: Any) -> Any:
    """Exceptions compare by identity; compare them by type and message instead."""
    if isinstance(x, BaseException):
        return ("exception", type(x).__name__, str(x))
    if isinstance(x, dict):
        return {k: _comparable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_comparable(v) for v in x]
    return x


def assert_item_equal(got: Any, want: Any, i: int) -> None:
    if isinstance(want, dict):
        assert _comparable(got) == _comparable(want), f"item {i}:\n{got}\n!=\n{want}"
        # and in LangChain's key order (what printing and json.dumps show)
        assert list(got) == list(want), f"item {i} key order: {list(got)} != {list(want)}"
        if isinstance(want.get("data"), dict):
            assert list(got["data"]) == list(want["data"]), (
                f"item {i} data key order: {list(got['data'])} != {list(want['data'])}")
    else:
        assert got == want, f"item {i}:\n{got!r}\n!=\n{want!r}"


def assert_same_errors(got: BaseException | None, want: BaseException | None) -> None:
    if want is None:
        assert got is None, repr(got)
    else:
        assert got is not None, f"expected {want!r}"
        assert type(got).__name__ == type(want).__name__
        assert str(got) == str(want)


def per_run(items: list[Any], api: str) -> dict[str, list[Any]]:
    """Split a stream into per-run subsequences (for nondeterministic interleavings)."""
    out: dict[str, list[Any]] = {}
    if api == "events":
        for ev in items:
            out.setdefault(ev["run_id"], []).append(_comparable(ev))
        return out
    key_to_id: dict[str, str] = {}
    for p in items:
        for op in p.ops:
            path = op["path"]
            if path.startswith("/logs/"):
                key = path.split("/")[2]
                if path.count("/") == 2:
                    key_to_id[key] = op["value"]["id"]
                rid = key_to_id[key]
                rest = "/".join(path.split("/")[3:])
                value = op["value"]
                if path.count("/") == 2:
                    value = {k: v for k, v in value.items()}
                out.setdefault(rid, []).append((op["op"], rest, value))
            else:
                out.setdefault("<root>", []).append((op["op"], path, op.get("value")))
    return out


def normalised_state(state: dict[str, Any]) -> dict[str, Any]:
    """A final state with /logs keyed by run id (sibling numbering may differ)."""
    s = dict(state)
    s["logs"] = {e["id"]: {k: v for k, v in e.items() if k != "name"} | {"name": e["name"]}
                 for e in state["logs"].values()}
    return s
