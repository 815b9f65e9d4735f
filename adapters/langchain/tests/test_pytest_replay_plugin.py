"""The pytest plugin that runs LangChain's own tests against the replay
(``-p runlog_langchain.pytest_replay``, used by ``scripts/langchain_own_tests.py``):
a test's assertions are answered by the replay (a broken replay fails them), the
inherent list is strict xfail, and the summary counts what ran.
"""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]

TEST_FILE = '''
import asyncio
import warnings
from langchain_core.runnables import Runnable, RunnableLambda

gen = RunnableLambda(lambda x: x + 1) | RunnableLambda(lambda x: x * 10)

def test_events():
    async def go(method):
        return [(e["event"], e["name"]) async for e in method(gen, 1, version="v2")]
    live = asyncio.run(go(Runnable.astream_events.__wrapped__))  # LangChain's own
    assert len(live) == 9
    assert asyncio.run(go(Runnable.astream_events)) == live

def test_log():
    async def go():
        warnings.simplefilter("ignore")
        return [p async for p in gen.astream_log(1, diff=False)]
    items = asyncio.run(go())
    assert items[-1].state["final_output"] == 20
    assert items[-1].state["streamed_output"] == [20]
    assert len(items[-1].state["logs"]) == 2

def test_no_call():
    assert True
'''

BREAK_REPLAY = '''
import runlog_langchain

_real = runlog_langchain.astream_events

async def _drop_ends(*args, **kwargs):
    async for e in _real(*args, **kwargs):
        if not e["event"].endswith("_end"):
            yield e

runlog_langchain.astream_events = _drop_ends
'''


def _run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, object]]:
    pytester.makepyfile(test_lc=TEST_FILE)
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess(
        "-p", "runlog_langchain.pytest_replay", "-p", "no:asyncio", "-p", "no:cacheprovider",
        f"--runlog-replay-report={report}", *args)
    return result, json.loads(report.read_text())


def test_the_tests_pass_on_the_replay(pytester: pytest.Pytester) -> None:
    result, summary = _run(pytester)
    result.assert_outcomes(passed=3)
    assert summary["replayed_tests"] == 2
    assert summary["replayed_calls"] == 2
    assert summary["no_replayed_call"] == ["test_lc.py::test_no_call"]
    assert summary["failed"] == []
    assert "2 tests made 2 replayed calls: 2 passed, 0 failed" in result.stdout.str()


def test_a_broken_replay_fails_the_test(pytester: pytest.Pytester) -> None:
    """The assertions see the replay, not LangChain's live stream."""
    pytester.makeconftest(BREAK_REPLAY)
    result, summary = _run(pytester)
    result.assert_outcomes(passed=2, failed=1)
    assert summary["failed"] == ["test_lc.py::test_events"]


def test_inherent_entries_are_strict_xfail(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(BREAK_REPLAY)
    inherent = pytester.path / "inherent.txt"
    inherent.write_text("# comment\n"
                        "test_lc.py::test_events | drops ends (this test's broken replay)\n"
                        "test_lc.py::test_log | passes, so strict xfail fails it\n"
                        "test_lc.py::test_gone | matches no test\n")
    result, summary = _run(pytester, f"--runlog-replay-inherent={inherent}",
                           "--runlog-replay-callers-only")
    result.assert_outcomes(xfailed=1, failed=1, deselected=1)  # test_no_call deselected
    assert summary["inherent"] == ["test_lc.py::test_events"]
    assert summary["inherent_not_found"] == ["test_lc.py::test_gone"]
    assert "inherent entry matched no test: test_lc.py::test_gone" in result.stdout.str()
