"""The pytest plugin, tested with pytester: fixtures, the record marker, --runlog-db."""

from __future__ import annotations

from pathlib import Path

import pytest

import runlog

pytest_plugins = ["pytester"]

TRACED = """
import runlog

@runlog.trace("retrieve", "retriever")
def retrieve(q):
    return ["doc about " + q]

@runlog.trace("answer")
def answer(q):
    return retrieve(q)[0].upper()
"""


def test_runlog_store_is_fresh_and_reported_on_failure(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        def test_ok(runlog_store):
            assert list(runlog_store.events()) == []
            with runlog_store.run("x") as run:
                run.stream("chunk")
            assert len(list(runlog_store.events())) == 3

        def test_fresh_again(runlog_store):
            assert list(runlog_store.events()) == []

        def test_fails(runlog_store):
            with runlog_store.run("kept") as run:
                run.end(outputs=1)
            assert False, "boom"
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*runs recorded by this test are kept in *runlog.db",
                                 "*runlog runs --all --db *runlog.db"])
    path = next(line.split(" kept in ")[1] for line in result.outlines if " kept in " in line)
    with runlog.open(path, create=False) as store:
        assert [r.name for r in store.runs()] == ["kept"]


def test_marker_records_the_test_and_traced_calls(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(traced=TRACED)
    pytester.makepyfile(test_it="""
        import os
        import pytest
        import runlog
        from traced import answer

        @pytest.mark.runlog_record
        def test_recorded(runlog_store, runlog_run):
            assert answer("q") == "DOC ABOUT Q"
            assert os.environ["RUNLOG_DB"] == runlog_store.location
            assert runlog.current_run() is runlog_run
            runlog_store.flush()
            runs = {r.name: r for r in runlog_store.runs(newest_first=False)}
            assert set(runs) == {"test_recorded", "answer", "retrieve"}
            assert runs["answer"].parent_id == runlog_run.id
            assert runs["retrieve"].parent_id == runs["answer"].run_id

        def test_not_recorded(runlog_store):
            assert answer("q") == "DOC ABOUT Q"
            assert runlog.current_run() is None
            assert list(runlog_store.events()) == []
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_runlog_db_records_the_whole_session(pytester: pytest.Pytester, tmp_path: Path) -> None:
    db = tmp_path / "session.db"
    pytester.makepyfile(traced=TRACED)
    pytester.makepyfile(test_it="""
        from traced import answer

        def test_one():
            assert answer("a") == "DOC ABOUT A"

        def test_two():
            assert answer("b") == "nope"

        def test_three():
            pass
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--runlog-db={db}")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([f"*this test's run: runlog show * --db {db}"])
    with runlog.open(db, create=False) as store:
        roots = {r.name: r for r in store.runs(roots_only=True)}
        assert set(roots) == {"test_one", "test_two", "test_three"}
        assert roots["test_one"].status == "ok"
        assert roots["test_three"].status == "ok"
        failed = roots["test_two"]
        assert failed.status == "error"
        assert failed.error is not None
        assert "nope" in failed.error.traceback
        sessions = {r.metadata["pytest_session"] for r in roots.values()}
        assert len(sessions) == 1
        children = store.trace_runs(roots["test_one"].run_id)
        assert [r.name for r in children] == ["test_one", "answer", "retrieve"]
        assert all(r.tags == ("pytest",) for r in children)
        assert store.verify().ok


def test_record_option_records_every_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import runlog

        def test_a(runlog_store):
            assert runlog.current_run() is not None
            assert runlog.current_run().name == "test_a"
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "--runlog-record")
    result.assert_outcomes(passed=1)


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.runlog_record:*"])


def test_the_documented_pytest_example_passes(pytester: pytest.Pytester) -> None:
    """docs/testing-toolkit.md's example is run as written."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "testing-toolkit.md").read_text()
    section = doc.split("## A pytest example", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    pytester.makepyfile(test_pipeline=code)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
