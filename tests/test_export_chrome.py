"""Chrome trace / Perfetto exports: slices nest per thread, tokens, counters, splitting."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

import runlog
from runlog.cli.core import record_demo
from runlog.exporters import chrome


def export_chrome(store: runlog.Store, **kwargs: Any) -> list[dict[str, Any]]:
    buf = io.BytesIO()
    runlog.export(store, "chrome", buf, **kwargs)
    doc = json.loads(buf.getvalue())
    assert doc["displayTimeUnit"] == "ms"
    events: list[dict[str, Any]] = doc["traceEvents"]
    return events


def assert_nested_per_thread(events: list[dict[str, Any]]) -> None:
    """On each (pid, tid), any two slices are disjoint or one contains the other."""
    by_thread: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for e in events:
        if e["ph"] == "X":
            by_thread[e["pid"], e["tid"]].append((e["ts"], e["ts"] + e["dur"]))
    for spans in by_thread.values():
        for a0, a1 in spans:
            for b0, b1 in spans:
                disjoint = a1 <= b0 or b1 <= a0
                nested = (a0 <= b0 and b1 <= a1) or (b0 <= a0 and a1 <= b1)
                assert disjoint or nested, (a0, a1, b0, b1)


def slices(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in events if e["ph"] == "X"}


def test_demo_trace_structure(store: runlog.Store) -> None:
    """One slice per run with its times and args, one instant per token on its lane."""
    record_demo(store)
    store.flush()
    events = export_chrome(store)
    runs = {r.run_id: r for r in store.runs()}
    xs = slices(events)
    assert len(xs) == len(runs)
    for x in xs.values():
        run = runs[x["args"]["run_id"]]
        assert x["ts"] == runlog.events.datetime_to_micros(run.start_time)
        assert run.end_time is not None
        assert x["ts"] + x["dur"] == runlog.events.datetime_to_micros(run.end_time)
        assert x["args"]["status"] == run.status
        assert x["cat"] == run.run_type
    assert_nested_per_thread(events)
    model = xs["FakeChatModel"]
    tokens = [e for e in store.events() if e.channel == "token"]
    instants = [e for e in events if e["ph"] == "i" and e["cat"] == "token"]
    assert [i["ts"] for i in instants] == [t.time_us for t in tokens]
    assert [i["args"]["token"] for i in instants] == [t.data["token"] for t in tokens]
    assert {(i["pid"], i["tid"]) for i in instants} == {(model["pid"], model["tid"])}
    assert xs["fact_check"]["args"]["error"].startswith("LookupError: ")
    names = {(e["pid"], e.get("tid")) for e in events if e["ph"] == "M"}
    assert (model["pid"], model["tid"]) in names


def test_token_counter_counts_every_token() -> None:
    """Windows of the tokens/s counter add up to the number of tokens, then drop to 0."""
    with runlog.open(":memory:") as store:
        run = store.start_run("model", "chat_model")
        for i in range(50):
            run.token(f"t{i}")
        run.end(outputs="done")
        store.flush()
        events = export_chrome(store)
    counters = [e for e in events if e["ph"] == "C"]
    assert counters
    total = sum(v * chrome.TOKEN_WINDOW_US / 1_000_000 for c in counters
                for v in c["args"].values())
    assert total == pytest.approx(50)
    last = max(counters, key=lambda c: c["ts"])
    assert next(iter(last["args"].values())) == 0


def test_token_counter_windows() -> None:
    """Tokens per 100 ms window, scaled to per second; a silent window reads 0."""
    us = runlog.events.micros_to_datetime
    t0 = 1_700_000_000_000_000
    with runlog.open(":memory:") as store:
        run = store.start_run("model", "llm", time=us(t0))
        for dt_us in (0, 10, 150_000, 160_000, 170_000, 450_000):
            run.token("x", time=us(t0 + dt_us))
        run.end(outputs="xxxxxx", time=us(t0 + 500_000))
        store.flush()
        events = export_chrome(store)
    counters = sorted((c["ts"] - t0, next(iter(c["args"].values())))
                      for c in events if c["ph"] == "C")
    assert counters == [(0, 20.0), (100_000, 30.0), (200_000, 0), (400_000, 10.0),
                        (500_000, 0)]


def test_parallel_children_get_their_own_lanes() -> None:
    """Siblings that overlap in time never share a thread; nesting holds everywhere."""
    with runlog.open(":memory:") as store:
        root = store.start_run("parallel", "chain")
        a = root.start_child("a", "chat_model")
        b = root.start_child("b", "chat_model")
        a_inner = a.start_child("a.inner", "tool")
        for i in range(5):
            a.token(f"a{i}")
            b.token(f"b{i}")
        a_inner.end(outputs=1)
        a.end(outputs="a")
        c = root.start_child("c", "tool")  # starts after a ended: may reuse a lane
        b.end(outputs="b")
        c.end(outputs="c")
        # a parent that ends before its child: the child's slice is kept inside it
        d = root.start_child("d", "chain")
        d_child = d.start_child("d.child", "tool")
        d.end(outputs="d")
        d_child.end(outputs="late")
        root.end(outputs="done")
        store.flush()
        events = export_chrome(store)
    assert_nested_per_thread(events)
    xs = slices(events)
    assert (xs["a"]["pid"], xs["a"]["tid"]) != (xs["b"]["pid"], xs["b"]["tid"])
    assert xs["a.inner"]["tid"] == xs["a"]["tid"]
    assert xs["d.child"]["args"]["outlived_parent_until"] > xs["d"]["ts"] + xs["d"]["dur"]
    for name in ("a", "b"):
        toks = [e for e in events if e["ph"] == "i" and e["name"].startswith(name)]
        assert {e["tid"] for e in toks} == {xs[name]["tid"]}


def test_traces_are_processes_and_open_runs_are_slices(store: runlog.Store) -> None:
    first = record_demo(store)
    second = record_demo(store)
    open_run = store.start_run("still-running", "chain")
    open_run.stream("partial")
    store.flush()
    events = export_chrome(store)
    procs = {e["pid"]: e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] == "process_name"}
    assert len(procs) == 3
    assert any(first in n for n in procs.values())
    assert any(second in n for n in procs.values())
    xs = slices(events)
    assert xs["still-running"]["args"]["status"] == "running"
    only = export_chrome(store, trace_id=second)
    assert {e["pid"] for e in only} == {1}


def test_args_are_cut_to_max_value_bytes() -> None:
    with runlog.open(":memory:") as store:
        with store.run("big", inputs={"text": "x" * 10_000}, metadata={"m": "y" * 5000}) as r:
            r.stream("z" * 10_000)
            r.end(outputs="w" * 10_000)
        events = export_chrome(store, max_value_bytes=200)
    x = slices(events)["big"]
    for key in ("inputs", "outputs", "metadata"):
        assert len(x["args"][key].encode()) <= 200
        assert x["args"][key].endswith(" bytes)")
    (chunk,) = [e for e in events if e["ph"] == "i"]
    assert len(chunk["args"]["chunk"].encode()) <= 200


def test_large_exports_split_into_loadable_parts(tmp_path: Path) -> None:
    """Every part is at most max_bytes, valid on its own, and names what it uses."""
    with runlog.open(":memory:") as store:
        for _ in range(3):
            record_demo(store)
        with store.run("long", "chat_model") as m:
            for i in range(400):
                m.token(f"token number {i} ")
            m.end(outputs="done")
        whole = export_chrome(store)
        out = tmp_path / "trace.json"
        result = runlog.export(store, "chrome", out, max_bytes=chrome.MIN_MAX_BYTES)
        fewer = runlog.export(store, "chrome", tmp_path / "again.json",
                              max_bytes=chrome.MIN_MAX_BYTES)
        for name in fewer.files:
            Path(name).rename(tmp_path / Path(name).name.replace("again", "old"))
        smaller = runlog.export(store, "chrome", tmp_path / "old.json",
                                max_bytes=chrome.MIN_MAX_BYTES * 2)
    assert len(result.files) > 2
    assert result.files[:3] == [str(out), str(tmp_path / "trace.1.json"),
                                str(tmp_path / "trace.2.json")]
    merged: list[dict[str, Any]] = []
    for name in result.files:
        data = Path(name).read_bytes()
        assert len(data) <= chrome.MIN_MAX_BYTES
        events = json.loads(data)["traceEvents"]
        named = {(e["pid"], e["tid"] if e["name"] == "thread_name" else None)
                 for e in events if e["ph"] == "M"}
        for e in events:
            if e["ph"] in ("X", "i"):
                assert (e["pid"], None) in named
                assert (e["pid"], e["tid"]) in named
        merged += [e for e in events if e["ph"] != "M"]
    assert merged == [e for e in whole if e["ph"] != "M"]
    assert not (tmp_path / "trace.json.partial").exists()
    # the parts of an earlier export with more parts do not linger beside the new ones
    assert len(smaller.files) < len(fewer.files)
    assert sorted(tmp_path.glob("old*")) == sorted(Path(f) for f in smaller.files)


def test_max_bytes_has_a_floor() -> None:
    with runlog.open(":memory:") as store, pytest.raises(ValueError, match="at least"):
        runlog.export(store, "chrome", io.BytesIO(), max_bytes=100)
