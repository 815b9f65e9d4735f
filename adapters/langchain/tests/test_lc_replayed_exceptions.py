"""A replayed failing Runnable raises what LangChain raised (issue 16, item 4).

Recorded live through LangChain's ``astream_events``/``astream_log`` with the Recorder,
replayed from the store by ``runlog_langchain``: the exception is of the same class,
with the same ``args`` and attributes, so ``pytest.raises(TheClass)`` holds on a
replay, and none of the class's code runs while replaying.
"""

from __future__ import annotations

from typing import Any

import pytest
import runlog_langchain
from langchain_core.runnables import RunnableLambda
from lc_diff_helpers import frozen_clock, replay, run_live

import runlog
from runlog.reducers import ReplayedError

pytestmark = pytest.mark.anyio

INITS: list[str] = []


class QuotaError(Exception):
    """A keyword-only constructor with a side effect."""

    def __init__(self, *, user: str, limit: int) -> None:
        INITS.append("QuotaError.__init__")
        super().__init__(f"{user} is over {limit}")
        self.user = user
        self.limit = limit


def make_local() -> BaseException:
    class LocalError(Exception):
        pass

    return LocalError("local", 1)


CASES: dict[str, Any] = {
    "value": lambda: ValueError("a", 2),
    "key": lambda: KeyError("k"),
    "os": lambda: OSError(2, "No such file", "/x"),
    "kw-only": lambda: QuotaError(user="ann", limit=3),
    "local": make_local,
}


async def _record_and_replay(case: str, api: str
                             ) -> tuple[BaseException, BaseException, runlog.Store, str]:
    exc = CASES[case]()

    def fail(x: Any) -> Any:
        raise exc

    chain = RunnableLambda(lambda x: x + 1) | RunnableLambda(fail).with_config(run_name="f")
    store = runlog.open(":memory:")
    with frozen_clock() as clock:
        _, live_error, root_id = await run_live(chain, 1, None, api, {}, store, clock)
    assert live_error is exc
    INITS.clear()
    _, replay_error = await replay(store, root_id, api, {})
    assert INITS == []
    assert replay_error is not None
    return exc, replay_error, store, root_id


def assert_same_exception(got: BaseException, want: BaseException) -> None:
    if "<locals>" in type(want).__qualname__:
        assert type(got) is ReplayedError
        assert isinstance(got, ReplayedError)
        assert got.type == f"{type(want).__module__}.{type(want).__qualname__}"
        assert got.recorded_args == want.args
    else:
        assert type(got) is type(want)
        assert got.args == want.args
        assert vars(got) == vars(want)
    assert str(got) == str(want)
    if isinstance(want, OSError):
        assert isinstance(got, OSError)
        assert (got.errno, got.strerror, got.filename) == (2, "No such file", "/x")


@pytest.mark.parametrize("api", ["events", "log"])
@pytest.mark.parametrize("case", list(CASES))
async def test_replay_raises_the_recorded_exception(case: str, api: str) -> None:
    want, got, store, root_id = await _record_and_replay(case, api)
    assert_same_exception(got, want)
    # the synchronous replays raise it too, and pytest.raises matches the class
    expected = ReplayedError if case == "local" else type(want)
    sync = runlog_langchain.stream_events if api == "events" else runlog_langchain.stream_log
    with pytest.raises(expected):
        list(sync(store, root_id))
    assert INITS == []
    store.close()


async def test_a_keyword_only_exception_is_caught_by_its_class_on_replay() -> None:
    _, got, store, _ = await _record_and_replay("kw-only", "events")
    with pytest.raises(QuotaError, match="ann is over 3") as info:
        raise got
    assert (info.value.user, info.value.limit) == ("ann", 3)
    assert INITS == []
    store.close()
