"""Threads: the runs of one LangGraph thread (a first call and its resume after an
interrupt) are linked by their metadata, listed by ``store.runs(thread=...)``, and
shown in order by ``runlog show --thread``; ``runlog show`` prints a graph's steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import runlog_langgraph as rlg
from langgraph.types import Command
from lg_scenarios import LOG_IN, interrupt_resume, two_node

import runlog
from runlog import Filter


def _record_thread(store: runlog.Store, thread: str) -> list[str]:
    graph = interrupt_resume()
    cfg = {"configurable": {"thread_id": thread}}
    with rlg.record(store) as rec:
        graph.invoke(LOG_IN, cfg)
        graph.invoke(Command(resume="yes"), cfg)
    return rec.graph_ids


def test_runs_of_a_thread(lg_store: runlog.Store) -> None:
    first = _record_thread(lg_store, "th-a")
    other = _record_thread(lg_store, "th-b")
    with rlg.record(lg_store):
        two_node().invoke(LOG_IN)  # no thread
    runs = lg_store.runs(thread="th-a", newest_first=False)
    assert [r.run_id for r in runs] == first
    assert [r.run_id for r in lg_store.runs(thread="th-b")] == other[::-1]
    assert all(r.metadata["thread_id"] == "th-a" for r in runs)
    assert lg_store.runs(thread="nope") == []
    assert [r.run_id for r in lg_store.runs(thread="th-a", limit=1, newest_first=False)] \
        == first[:1]
    with pytest.raises(TypeError):
        lg_store.runs(thread="th-a", filter=Filter(include_names=["x"]))
    with pytest.raises(TypeError):
        lg_store.runs(thread=3)  # type: ignore[arg-type]
    # the resumed run's stream starts from the interrupted node
    assert list(rlg.stream(lg_store, first[1], stream_mode="updates")) == [
        {"ask": {"log": ["answer:yes"]}}, {"b": {"log": ["b"]}}]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([str(Path(sys.executable).parent / "runlog"), *args],
                          capture_output=True,
                          text=True, env=env, timeout=120, check=False)


def test_cli_show_thread_and_steps(tmp_path: Path) -> None:
    db = str(tmp_path / "t.db")
    with runlog.open(db) as store:
        ids = _record_thread(store, "th-cli")
    r = _cli("show", "--thread", "th-cli", "--db", db)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "thread th-cli: 2 run(s)" in out
    assert out.index(ids[0]) < out.index(ids[1])
    assert "interrupt" in out
    assert "proceed?" in out
    assert "step 1" in out
    assert "nodes: a" in out
    r = _cli("show", "--thread", "th-cli", "--db", db, "--json")
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["run_id"] for x in lines] == ids
    assert lines[1]["steps"][-1]["updates"] == [["b", {"log": ["b"]}]]
    r = _cli("show", ids[0], "--db", db)
    assert r.returncode == 0, r.stderr
    assert "graph steps" in r.stdout
    assert "add /log/-" in r.stdout
    r = _cli("show", "--db", db)
    assert r.returncode != 0
    assert "RUN_ID or --thread" in r.stderr
