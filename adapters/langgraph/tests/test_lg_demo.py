"""``runlog demo --agent`` runs offline in a subprocess and shows the live updates, the
stored tree, the graph steps and the replay."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import runlog_langgraph as rlg

import runlog


def test_demo_agent(tmp_path: Path) -> None:
    db = str(tmp_path / "demo.db")
    r = subprocess.run([str(Path(sys.executable).parent / "runlog"), "demo", "--agent",
                        "--delay", "0", "--db", db], capture_output=True, text=True,
                       timeout=120, check=False, env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    out = r.stdout
    live, rest = out.split("Stored run tree", 1)
    tree, rest = rest.split("Graph steps", 1)
    steps, replay = rest.split("Replay from the store", 1)
    assert "tools: ToolMessage '42'" in live
    assert "multiply tool ok" in tree
    assert "step 5: agent" in steps
    # the replayed updates are the live ones
    assert [ln for ln in live.splitlines() if ln.startswith("  ")] == [
        ln for ln in replay.splitlines() if ln.startswith("  ")][:5]
    with runlog.open(db) as store:
        (graph,) = [r for r in store.runs() if r.name == "LangGraph"]
        assert rlg.state(store, graph.run_id)["messages"][-1].content == "(3 + 4) * 6 is 42."
