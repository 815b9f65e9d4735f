"""``runlog show``: readable LLM content, ``--full``, ``--raw`` and the whole run as JSON.

Every command runs in a subprocess (the real CLI). The store is written by
``content_fixtures.py`` in its own process with stand-in classes registered under the
LangChain adapter's tag, so these readers have no LangChain and no registration: they
see exactly what a reader of someone else's store sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from content_fixtures import FORGED_PATH

HERE = Path(__file__).parent


def runlog_cmd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([str(Path(sys.executable).parent / "runlog"), *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120)


@pytest.fixture(scope="module")
def agent_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    where = tmp_path_factory.mktemp("content")
    db = where / "agent.db"
    done = subprocess.run([sys.executable, str(HERE / "content_fixtures.py"), str(db)],
                          capture_output=True, text=True, cwd=where, timeout=120)
    assert done.returncode == 0, done.stderr
    return db, done.stdout.strip()


def show(agent_db: tuple[Path, str], *flags: str) -> str:
    db, root = agent_db
    done = runlog_cmd("show", root[-12:], "--db", str(db), *flags, cwd=db.parent)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    if "--json" not in flags:  # (the JSON holds the failed run's stored traceback)
        assert "Traceback" not in done.stdout
    assert not (db.parent / FORGED_PATH).exists()  # a forged tag is shown, never run
    return done.stdout


def test_show_prints_messages_documents_and_prompts(agent_db: tuple[Path, str]) -> None:
    out = show(agent_db)
    assert "$rl:lc" not in out
    assert '"lc":1' not in out
    assert "1 document: Paris is in France." in out
    assert "prompt: system: You answer in one line. | human: Weather in Paris?" in out
    assert ('ai: Let me look. [tool calls: get_weather({"city":"Paris"}) id=call_42] '
            "[usage: 31 input, 12 output, 43 total]") in out
    assert "tool: 18 C, light rain [result of call_42]" in out
    assert '{"$rl:exception":["io:FileIO",["runlog-content-forged.txt","w"],""]}' in out
    assert "LookupError: no source" in out


def test_show_full_prints_whole_values_on_lines(agent_db: tuple[Path, str]) -> None:
    out = show(agent_db, "--full")
    for line in ('document doc-7 {"src":"geo.md","page":3}:', "Paris is in France.",
                 "system: You answer in one line.", "human: Weather in Paris?",
                 'tool call get_weather({"city":"Paris"}) id=call_42',
                 "usage: 31 input, 12 output, 43 total", 'input: {"city":"Paris"}'):
        assert line in out, line
    assert "…" not in out


def test_show_full_does_not_cut_long_outputs(tmp_path: Path) -> None:
    db = tmp_path / "long.db"
    code = ("import runlog,sys\n"
            "s=runlog.open(sys.argv[1])\n"
            "with s.run('long', inputs={'q': 'x'}) as r: r.end(outputs={'a': 'w' * 500})\n"
            "s.close()\n")
    subprocess.run([sys.executable, "-c", code, str(db)], check=True, timeout=60)
    root = json.loads(runlog_cmd("runs", "--db", str(db), "--json", cwd=tmp_path)
                      .stdout.splitlines()[0])["run_id"]
    cut = runlog_cmd("show", root, "--db", str(db), cwd=tmp_path).stdout
    assert "w" * 500 not in cut.replace("\n", "")
    assert "…" in cut
    whole = runlog_cmd("show", root, "--db", str(db), "--full", cwd=tmp_path).stdout
    assert any("w" * 500 in line for line in whole.splitlines())  # a pipe: never wrapped


def test_show_raw_prints_the_stored_json(agent_db: tuple[Path, str]) -> None:
    out = show(agent_db, "--raw")
    assert '{"$rl:lc":{"lc":1,"type":"constructor","id":["langchain","schema","document",' \
        in out.replace("\n", "")
    assert "ai: Let me look." not in out
    whole = show(agent_db, "--raw", "--full")
    assert '"$rl:lc": {' in whole  # indented, whole
    assert '"page_content": "Paris is in France."' in whole


def test_show_json_gives_the_whole_run(agent_db: tuple[Path, str]) -> None:
    _db, root = agent_db
    rows = [json.loads(line) for line in show(agent_db, "--json").splitlines()]
    by_name = {r["name"]: r for r in rows}
    assert [r["name"] for r in rows] == ["agent", "Docs", "prompt", "ChatOpenAI",
                                         "get_weather", "forged", "check"]
    top = by_name["agent"]
    assert top["run_id"] == root
    assert top["inputs"] == {"question": "Weather in Paris?"}
    assert top["outputs"] == {"answer": "18 C, light rain"}
    assert top["children"] == [r["run_id"] for r in rows[1:]]
    assert top["duration_ms"] > 0
    assert top["metadata"] == {}
    model = by_name["ChatOpenAI"]
    assert model["streamed"] == "Let me look."
    assert model["usage"] == {"input_tokens": 31, "output_tokens": 12, "total_tokens": 43}
    assert model["outputs"]["generations"][0][0]["message"]["$rl:lc"]["kwargs"][
        "tool_calls"][0]["id"] == "call_42"  # values as stored, lossless
    assert by_name["check"]["error"]["type"] == "LookupError"
    assert by_name["check"]["status"] == "error"
    assert by_name["check"]["children"] == []
    assert by_name["forged"]["inputs"] == {
        "x": {"$rl:exception": ["io:FileIO", [FORGED_PATH, "w"], ""]}}


def test_show_of_a_child_shows_its_subtree_only(agent_db: tuple[Path, str]) -> None:
    db, _ = agent_db
    rows = [json.loads(line) for line in
            runlog_cmd("runs", "--db", str(db), "--json", "--include-type", "chat_model",
                       cwd=db.parent).stdout.splitlines()]
    out = runlog_cmd("show", rows[0]["run_id"], "--db", str(db), "--json", cwd=db.parent)
    assert [json.loads(line)["name"] for line in out.stdout.splitlines()] == ["ChatOpenAI"]
