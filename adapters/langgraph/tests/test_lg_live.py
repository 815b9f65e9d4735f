"""Live: replaying a graph run while another process still records it follows it to
its end (``store.tail``), never skipping or repeating; ``runlog serve`` serves a run's
v3 protocol events over SSE (``id:`` = seq) and resumes after ``Last-Event-ID``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import runlog_langgraph as rlg
from lg_scenarios import SCENARIOS
from starlette.testclient import TestClient

import runlog
from runlog import codec
from runlog.ids import uuid7
from runlog.web.app import create_app

HERE = Path(__file__).parent


def _writer(db: str, rid: str, out: Path, mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(HERE / "lg_live_writer.py"), db, rid,
                             str(out), mode], cwd=str(HERE))


def _lines(path: Path) -> list[Any]:
    return [codec.decode(line) for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize("mode", ["stream", "v3"])
def test_follow_a_run_recorded_by_another_process(tmp_path: Path, mode: str) -> None:
    db, out, rid = str(tmp_path / "live.db"), tmp_path / "live.out", str(uuid7())
    runlog.open(db).close()  # the file exists before either side opens it
    proc = _writer(db, rid, out, mode)
    try:
        with runlog.open(db) as store:
            it: Any = (rlg.stream_events(store, rid) if mode == "v3"
                       else rlg.stream(store, rid))
            got = [next(it)]
            # the first item came while the other process still records the run
            assert store.run_info(rid).status == "running"
            Path(str(out) + ".go").touch()
            got.extend(it)
            assert proc.wait(timeout=120) == 0
            live = _lines(out)
            assert got == live
            assert len(live) >= (3 if mode == "v3" else 9)  # v3: no custom channel here
    finally:
        if proc.poll() is None:
            proc.kill()


def _sse(body: str) -> list[tuple[int, str, Any]]:
    out = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines()
                      if ": " in line and not line.startswith(":"))
        if "id" in fields:
            out.append((int(fields["id"]), fields["event"], codec.decode(fields["data"])))
    return out


@pytest.mark.filterwarnings("ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")
def test_serve_protocol_sse(tmp_path: Path) -> None:
    db = str(tmp_path / "sse.db")
    sc = next(s for s in SCENARIOS if s.name == "subgraph")
    with runlog.open(db) as store:
        with rlg.record(store) as rec:
            list(sc.build().stream_events(sc.calls[0], version="v3"))
        (rid,) = rec.graph_ids
        events = list(rlg.stream_events(store, rid))
        client = TestClient(create_app(store), base_url="http://127.0.0.1")
        r = client.get(f"/api/runs/{rid}/protocol")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        got = _sse(r.text)
        assert [(s, m) for s, m, _ in got] == [(e["seq"], e["method"]) for e in events]
        assert [d for _, _, d in got] == events
        cut = events[len(events) // 2]["seq"]
        r = client.get(f"/api/runs/{rid}/protocol", headers={"Last-Event-ID": str(cut)})
        assert [s for s, _, _ in _sse(r.text)] == [e["seq"] for e in events if e["seq"] > cut]
        r = client.get(f"/api/runs/{rid}/protocol?channels=values,lifecycle")
        assert [d for _, _, d in _sse(r.text)] == list(
            rlg.stream_events(store, rid, channels=["values", "lifecycle"]))
        ns = next(e["params"]["namespace"] for e in events if e["params"]["namespace"])
        r = client.get(f"/api/runs/{rid}/protocol?namespace={'/'.join(ns)}")
        assert [d for _, _, d in _sse(r.text)] == list(
            rlg.stream_events(store, rid, namespace=ns))
        r = client.get(f"/api/runs/{rid}/protocol", headers={"Last-Event-ID": "x1"})
        assert r.status_code == 400
        r = client.get("/api/runs/nonexistent-run/protocol")
        assert r.status_code == 404


def test_the_adapter_is_an_installed_protocol_source() -> None:
    """runlog-langgraph's entry point is what lets `runlog serve` derive v3 events."""
    from runlog.web.protocol import protocol_sources

    assert rlg.stream_events in protocol_sources()


@pytest.mark.parametrize("call", ["stream", "invoke"])
def test_serve_protocol_sse_of_a_plain_call(tmp_path: Path, call: str) -> None:
    """A run recorded by stream()/invoke() holds no v3 events; the endpoint serves the
    ones runlog_langgraph derives, resumable after Last-Event-ID like recorded ones."""
    db = str(tmp_path / "sse-plain.db")
    sc = next(s for s in SCENARIOS if s.name == "subgraph")
    with runlog.open(db) as store:
        with rlg.record(store) as rec:
            if call == "stream":
                list(sc.build().stream(sc.calls[0], stream_mode="updates"))
            else:
                sc.build().invoke(sc.calls[0])
        (rid,) = rec.graph_ids
        events = list(rlg.stream_events(store, rid))
        assert len(events) >= 3
        client = TestClient(create_app(store), base_url="http://127.0.0.1")
        r = client.get(f"/api/runs/{rid}/protocol")
        assert r.status_code == 200
        got = _sse(r.text)
        assert [(s, m) for s, m, _ in got] == [(e["seq"], e["method"]) for e in events]
        assert [d for _, _, d in got] == events
        cut = events[len(events) // 2]["seq"]
        r = client.get(f"/api/runs/{rid}/protocol", headers={"Last-Event-ID": str(cut)})
        assert [d for _, _, d in _sse(r.text)] == [e for e in events if e["seq"] > cut]
        r = client.get(f"/api/runs/{rid}/protocol?channels=values")
        assert [d for _, _, d in _sse(r.text)] == list(
            rlg.stream_events(store, rid, channels=["values"]))
        assert all(d["method"] == "values" for _, _, d in _sse(r.text))


def test_serve_graph_steps(tmp_path: Path) -> None:
    db = str(tmp_path / "steps.db")
    sc = next(s for s in SCENARIOS if s.name == "two_node")
    with runlog.open(db) as store:
        with rlg.record(store) as rec:
            sc.build().invoke(sc.calls[0])
        client = TestClient(create_app(store), base_url="http://127.0.0.1")
        r = client.get(f"/api/runs/{rec.graph_ids[0]}/graph")
        assert r.status_code == 200
        steps = codec.decode(r.content)
        assert [s["step"] for s in steps] == [0, 1, 2]
        assert steps[1]["updates"] == [["a", {"log": ["a"]}]]
        assert steps[2]["diff"] == [{"op": "add", "path": "/log/-", "value": "b"}]
