"""A pytest plugin that answers every ``astream_events`` v2 / ``astream_log`` call from a
replay: LangChain's own tests, unedited, become tests of the replay.

``pytest -p runlog_langchain.pytest_replay`` patches ``Runnable.astream_events`` (and
the classes of ``langchain_core`` that override it) and ``Runnable.astream_log``. Each
call then

1. runs LangChain's own method with a :class:`~runlog_langchain.Recorder` added to the
   call's callbacks, recording into a fresh in-memory store, and consumes it to the end
   (or to its exception);
2. yields what :func:`runlog_langchain.astream_events` / :func:`astream_log` replay from
   that store for the recorded root, with the same keyword arguments, and raises the
   replayed error if the recorded root failed.

So a test's assertions about what LangChain yields hold only if the replay yields the
same. Calls nested inside a recorded call (a lambda streaming another chain) run as
LangChain's own; ``astream_events(version="v1"|"v3")`` is not replayed (runlog
replays v2 only) and runs as LangChain's own too.

Options:
    ``--runlog-replay-inherent=PATH``: a file of ``nodeid-suffix | reason`` lines, the
    tests that cannot hold for a replay by their nature (they cancel or break the live
    consumer and then check what happened to the live run); each is marked
    ``xfail(strict=True)`` with its reason, so one that starts passing is reported.
    ``--runlog-replay-callers-only``: deselect the tests whose own source names
    neither method (they cannot exercise the replay).
    ``--runlog-replay-report=PATH``: write a JSON summary (passed, failed, xfailed, the
    tests that made no replayed call, recorder failures per test).

The run time is a test's own plus one replay per call: the store is in memory.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackManager
from langchain_core.runnables import Runnable

import runlog
import runlog_langchain
from runlog_langchain.recorder import Recorder

__all__ = ["pytest_addoption", "pytest_configure"]

_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "runlog_pytest_replay_active", default=False)
_LOG_KEYS = ("diff", "with_streamed_output_list", "include_names", "include_types",
             "include_tags", "exclude_names", "exclude_types", "exclude_tags")
_EVENT_KEYS = ("include_names", "include_types", "include_tags", "exclude_names",
               "exclude_types", "exclude_tags")


class _Stats:
    """What the replayed calls of the current test did."""

    def __init__(self) -> None:
        self.test = ""
        self.calls: dict[str, int] = {}
        self.failures: dict[str, int] = {}

    def count(self, rec: Recorder) -> None:
        self.calls[self.test] = self.calls.get(self.test, 0) + 1
        if rec.failures:
            self.failures[self.test] = self.failures.get(self.test, 0) + rec.failures


_STATS = _Stats()


def _with_recorder(config: Any, rec: Recorder) -> dict[str, Any]:
    """The call's config with ``rec`` added to its callbacks (a copy; the caller's is
    left as it was)."""
    cfg = dict(config or {})
    cbs = cfg.get("callbacks")
    if cbs is None:
        cfg["callbacks"] = [rec]
    elif isinstance(cbs, BaseCallbackManager):
        manager = cbs.copy()
        manager.add_handler(rec, inherit=True)
        cfg["callbacks"] = manager
    else:
        cfg["callbacks"] = [*cbs, rec]
    return cfg


async def _record_then_replay(live: Callable[[dict[str, Any]], AsyncIterator[Any]],
                              config: Any, replay: Callable[..., AsyncIterator[Any]],
                              replay_kwargs: dict[str, Any]) -> AsyncIterator[Any]:
    store = runlog.open(":memory:")
    try:
        rec = Recorder(store)
        live_error: BaseException | None = None
        token = _ACTIVE.set(True)
        try:
            async for _ in live(_with_recorder(config, rec)):
                pass
        except Exception as e:
            live_error = e
        finally:
            _ACTIVE.reset(token)
        await store.aflush()
        _STATS.count(rec)
        if not rec.root_ids:  # nothing started (e.g. invalid arguments): LangChain's error
            if live_error is not None:
                raise live_error
            raise AssertionError("runlog_langchain.pytest_replay: the call recorded no run")
        async for item in replay(store, rec.root_ids[0], **replay_kwargs):
            yield item
    finally:  # closing joins the writer thread: not on the event loop
        await asyncio.to_thread(store.close)


def _patch_events(cls: type) -> None:
    original = cls.__dict__["astream_events"]

    def astream_events(self: Any, input: Any, config: Any = None, **kwargs: Any) -> Any:
        bound = getattr(self, "kwargs", None)  # a RunnableBinding's bound kwargs
        version = kwargs.get("version", bound.get("version", "v2")
                             if isinstance(bound, dict) else "v2")
        if _ACTIVE.get() or version != "v2":
            return original(self, input, config, **kwargs)
        replay_kwargs = {k: kwargs[k] for k in _EVENT_KEYS if k in kwargs}
        return _record_then_replay(
            lambda cfg: original(self, input, cfg, **kwargs), config,
            runlog_langchain.astream_events, replay_kwargs)

    functools.update_wrapper(astream_events, original)  # LangChain's signature and doc
    setattr(cls, "astream_events", astream_events)  # noqa: B010


def _patch_log(cls: type) -> None:
    original = cls.__dict__["astream_log"]

    def astream_log(self: Any, input: Any, config: Any = None, **kwargs: Any) -> Any:
        if _ACTIVE.get():
            return original(self, input, config, **kwargs)
        replay_kwargs = {k: kwargs[k] for k in _LOG_KEYS if k in kwargs}
        return _record_then_replay(
            lambda cfg: original(self, input, cfg, **kwargs), config,
            runlog_langchain.astream_log, replay_kwargs)

    functools.update_wrapper(astream_log, original)
    setattr(cls, "astream_log", astream_log)  # noqa: B010


def _subclasses(cls: type) -> list[type]:
    out, todo = [], [cls]
    while todo:
        c = todo.pop()
        out.append(c)
        todo.extend(c.__subclasses__())
    return out


def install() -> None:
    """Patch ``Runnable`` and the ``langchain_core`` classes that override its methods."""
    # the modules that define the overriding classes (chat models, bindings)
    import langchain_core.language_models
    import langchain_core.runnables  # noqa: F401

    for cls in dict.fromkeys(_subclasses(Runnable)):
        if "astream_events" in cls.__dict__:
            _patch_events(cls)
        if "astream_log" in cls.__dict__:
            _patch_log(cls)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("runlog-replay")
    group.addoption("--runlog-replay-inherent", default=None,
                    help="file of 'nodeid-suffix | reason' lines to mark xfail")
    group.addoption("--runlog-replay-callers-only", action="store_true",
                    help="deselect the tests whose source calls neither method")
    group.addoption("--runlog-replay-report", default=None,
                    help="write a JSON summary of the run to this file")


def pytest_configure(config: pytest.Config) -> None:
    install()
    config.pluginmanager.register(_Plugin(config), "runlog-replay-session")


def read_inherent(path: str | Path) -> dict[str, str]:
    """``{nodeid suffix: reason}`` from a ``suffix | reason`` file (``#`` comments)."""
    out: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        suffix, _, reason = line.partition("|")
        out[suffix.strip()] = reason.strip()
    return out


class _Plugin:
    def __init__(self, config: pytest.Config) -> None:
        path = config.getoption("--runlog-replay-inherent")
        self.inherent = read_inherent(path) if path else {}
        self.report_path = config.getoption("--runlog-replay-report")
        self.callers_only = bool(config.getoption("--runlog-replay-callers-only"))
        self.outcomes: dict[str, str] = {}
        self.unused = set(self.inherent)

    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        if self.callers_only:
            keep = [i for i in items if _calls_a_replayed_method(i)]
            config.hook.pytest_deselected(items=[i for i in items if i not in keep])
            items[:] = keep
        for item in items:
            for suffix, reason in self.inherent.items():
                if item.nodeid.endswith(suffix):
                    item.add_marker(pytest.mark.xfail(
                        reason=f"cannot hold for a replay: {reason}", strict=True))
                    self.unused.discard(suffix)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Any:
        _STATS.test = item.nodeid
        try:
            return (yield)
        finally:
            _STATS.test = ""

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            outcome: str = report.outcome
            if hasattr(report, "wasxfail"):
                outcome = ("inherent" if report.wasxfail.startswith("cannot hold for a replay")
                           else "xfailed")
            self.outcomes[report.nodeid] = outcome

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        replayed = {t: o for t, o in self.outcomes.items() if _STATS.calls.get(t)}
        summary = {
            "langchain_core": _lc_version(),
            "replayed_tests": len(replayed),
            "passed": sorted(t for t, o in replayed.items() if o == "passed"),
            "failed": sorted(t for t, o in replayed.items() if o == "failed"),
            "inherent": sorted(t for t, o in self.outcomes.items() if o == "inherent"),
            "xfailed_by_langchain": sorted(t for t, o in self.outcomes.items()
                                           if o == "xfailed"),
            "no_replayed_call": sorted(t for t in self.outcomes if not _STATS.calls.get(t)),
            "replayed_calls": sum(_STATS.calls.values()),
            "recorder_failures": dict(sorted(_STATS.failures.items())),
            "inherent_not_found": sorted(self.unused),
        }
        if self.report_path:
            Path(self.report_path).write_text(json.dumps(summary, indent=1) + "\n")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        replayed = [t for t in self.outcomes if _STATS.calls.get(t)]
        passed = sum(self.outcomes[t] == "passed" for t in replayed)
        failed = sum(self.outcomes[t] == "failed" for t in replayed)
        inherent = sum(o == "inherent" for o in self.outcomes.values())
        xfailed = sum(o == "xfailed" for o in self.outcomes.values())
        terminalreporter.write_line(
            f"runlog replay, langchain-core {_lc_version()}: {len(replayed)} tests made "
            f"{sum(_STATS.calls.values())} replayed calls: {passed} passed, {failed} failed; "
            f"{inherent} xfailed as cannot hold for a replay; {xfailed} xfailed by LangChain; "
            f"{sum(not _STATS.calls.get(t) for t in self.outcomes)} made no replayed call")
        for t, n in sorted(_STATS.failures.items()):
            terminalreporter.write_line(f"  recorder failures: {n} in {t}")
        for suffix in sorted(self.unused):
            terminalreporter.write_line(f"  inherent entry matched no test: {suffix}")


def _calls_a_replayed_method(item: pytest.Item) -> bool:
    """Whether a test's own source names ``astream_events`` or ``astream_log``."""
    fn = getattr(item, "function", None)
    try:
        source = inspect.getsource(fn) if fn is not None else ""
    except (OSError, TypeError):
        return False
    return "astream_events" in source or "astream_log" in source


def _lc_version() -> str:
    from langchain_core import __version__

    return str(__version__)
