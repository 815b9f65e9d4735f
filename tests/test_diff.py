"""runlog.diff and `runlog diff`: alignment by tree position and name, first divergence,
JSON Patch between states, timings apart."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings

import runlog
from runlog.cli import cli
from runlog.diff import diff_events
from runlog.testing.strategies import Program, play, programs


def record_chain(store: runlog.Store, tokens: list[str], *, fail: bool = False,
                 extra_tool: bool = False) -> str:
    """The same small RAG chain; tokens, a failure or an extra tool call vary."""
    with store.run("rag", inputs={"question": "q"}) as root:
        with root.child("retriever", "retriever", inputs={"query": "q"}) as r:
            r.end(outputs={"documents": ["d1", "d2"]})
        with root.child("model", "chat_model", inputs={"prompt": "p"}) as m:
            for t in tokens:
                m.token(t)
            m.end(outputs={"content": "".join(tokens)})
        if extra_tool:
            with root.child("tool", "tool") as t:
                t.end(outputs=1)
        if fail:
            with pytest.raises(ValueError), root.child("parser", "parser") as p:
                raise ValueError("bad json")
            _ = p
        root.end(outputs={"answer": "".join(tokens)})
    return root.id


def test_a_run_diffed_with_itself_is_empty(store: runlog.Store) -> None:
    a = record_chain(store, ["Hel", "lo"])
    d = runlog.diff(store, a, a)
    assert d.same
    assert not d
    assert d.first_divergence is None
    assert d.patch == []
    assert d.state_patch == []
    assert [t.run for t in d.timings] == ["rag", "rag/retriever", "rag/model"]


def test_two_recordings_of_the_same_chain_are_the_same(store: runlog.Store) -> None:
    """Ids and times differ between recordings; the diff ignores them."""
    a = record_chain(store, ["Hel", "lo"])
    b = record_chain(store, ["Hel", "lo"])
    d = runlog.diff(store, a, b)
    assert d.same, d.to_dict()


def test_one_different_token_is_named(store: runlog.Store) -> None:
    a = record_chain(store, ["Hel", "lo", " world"])
    b = record_chain(store, ["Hel", "p", " world"])
    d = runlog.diff(store, a, b)
    assert not d.same
    div = d.first_divergence
    assert div is not None
    assert (div.run, div.index, div.field) == ("rag/model", 2, "data")
    assert div.describe() == "run 'rag/model', event 2: token 'lo' in A, 'p' in B"
    assert {"op": "replace", "path": "/runs/rag~1model/tokens/1", "value": "p"} in d.patch
    assert any(op["path"].endswith("/streamed_output_str/1") or op.get("value") == "p"
               for op in d.state_patch)


def test_errors_and_extra_runs_show_in_the_patch(store: runlog.Store) -> None:
    a = record_chain(store, ["x"])
    b = record_chain(store, ["x"], fail=True, extra_tool=True)
    d = runlog.diff(store, a, b)
    assert d.only_in_b == ["rag/tool", "rag/parser"]
    assert d.only_in_a == []
    added = {op["path"]: op["value"] for op in d.patch if op["op"] == "add"}
    assert added["/runs/rag~1parser"]["error"] == {"type": "ValueError", "message": "bad json"}
    assert added["/runs/rag~1parser"]["status"] == "error"
    assert d.first_divergence is not None
    assert d.first_divergence.field == "missing_in_a"
    assert d.first_divergence.run == "rag/tool"


def test_alignment_is_by_position_and_name_not_order_of_ids(store: runlog.Store) -> None:
    """Two children with the same name are aligned first with first, second with second."""
    def rec(outputs: list[str]) -> str:
        with store.run("agent") as root:
            for o in outputs:
                with root.child("tool", "tool") as t:
                    t.end(outputs=o)
        return root.id

    d = runlog.diff(store, rec(["a", "b"]), rec(["a", "c"]))
    assert d.first_divergence is not None
    assert d.first_divergence.run == "agent/tool[1]"
    assert d.patch == [{"op": "replace", "path": "/runs/agent~1tool[1]/outputs", "value": "c"}]


def test_names_with_slashes_do_not_collide(store: runlog.Store) -> None:
    with store.run("r") as root, root.child("a/b"):
        pass
    with store.run("r") as other, other.child("a"), store.run("b"):
        pass
    d = runlog.diff(store, root.id, other.id)
    assert d.only_in_a == ["r/a\\/b"]
    assert d.only_in_b == ["r/a", "r/a/b"]
    # runlog.fold escapes names in its pointers, so the RunStates of both fold and the
    # state patch names the "a/b" entry by its real name
    assert d.state_note is None
    assert any(op["path"].startswith("/logs/a~1b") for op in d.state_patch), d.state_patch


def test_diff_across_stores_and_by_prefix(tmp_path: Path) -> None:
    with runlog.open(tmp_path / "a.db") as sa, runlog.open(tmp_path / "b.db") as sb:
        a = record_chain(sa, ["one"])
        b = record_chain(sb, ["two"])
        d = runlog.diff(sa, a[-12:], b, store_b=sb)
        assert d.first_divergence is not None
        assert "token 'one' in A, 'two' in B" in d.first_divergence.describe()


@settings(max_examples=20, suppress_health_check=[HealthCheck.too_slow])
@given(programs(max_roots=1))
def test_replaying_a_program_twice_diffs_empty(program: Program) -> None:
    """Any program recorded twice (other ids, other times) gives an empty diff."""
    with runlog.open(":memory:") as store:
        a = play(program, store)
        b = play(program, store)
        ev_a = list(store.events(a.root_ids[0], descendants=True))
        ev_b = list(store.events(b.root_ids[0], descendants=True))
        assert diff_events(ev_a, ev_b).same


def test_cli_json_and_human(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.db")
    with runlog.open(db) as store:
        a = record_chain(store, ["Hel", "lo"])
        b = record_chain(store, ["Hel", "p"])
    runner = CliRunner()
    res = runner.invoke(cli, ["diff", a, b, "--db", db, "--json"])
    assert res.exit_code == 0, res.output
    data = orjson.loads(res.output)
    assert data["same"] is False
    assert data["first_divergence"]["description"] == (
        "run 'rag/model', event 2: token 'lo' in A, 'p' in B")
    assert {t["run"] for t in data["timings"]} == {"rag", "rag/retriever", "rag/model"}
    human = runner.invoke(cli, ["diff", a, b, "--db", db])
    assert human.exit_code == 0, human.output
    assert "first divergence" in human.output
    assert "token 'lo' in A, 'p' in B" in human.output
    assert "/runs/rag~1model/tokens/1" in human.output
    assert "timings" in human.output
    same = runner.invoke(cli, ["diff", a, a, "--db", db, "--exit-code"])
    assert same.exit_code == 0
    assert "same events and outputs" in same.output
    differs = runner.invoke(cli, ["diff", a, b, "--db", db, "--exit-code"])
    assert differs.exit_code == 1
    unknown = runner.invoke(cli, ["diff", a, "nope-nope-nope", "--db", db])
    assert unknown.exit_code == 1
    assert "Traceback" not in unknown.output
