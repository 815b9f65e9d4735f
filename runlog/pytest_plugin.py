"""pytest plugin (entry point ``pytest11``, loaded automatically once runlog is installed).

What it gives a test suite:

* ``runlog_store``: a fresh SQLite store per test in the test's temporary directory.
  When the test fails, the report names the file so the runs can be inspected with
  ``runlog runs --all --db PATH`` / ``runlog show RUN_ID --db PATH``.
* ``@pytest.mark.runlog_record`` (or ``--runlog-record`` for every test): the test
  itself is recorded as a root run named after its node id, made the *current run*,
  so every function decorated with ``runlog.trace`` that the test calls is recorded as
  its child, and ``$RUNLOG_DB`` points at the store for code that calls
  ``runlog.open()`` without a path. The run ends with the test's outcome (an error
  run for a failing test, with the assertion message). The ``runlog_run`` fixture
  gives that run (and turns recording on for the test that asks for it).
* ``--runlog-db PATH``: record every test of the session into that one store (one
  root run per test, tagged ``pytest`` and with the session id in their metadata),
  instead of a store per test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from runlog.api import Store
from runlog.api import open as open_store
from runlog.events import ErrorInfo
from runlog.recorder import Run

__all__ = ["runlog_run", "runlog_store"]

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
_SESSION_STORE = pytest.StashKey[Store]()
_SESSION_ID = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("runlog", "runlog: record the runs a test makes")
    group.addoption("--runlog-db", action="store", default=None, metavar="PATH",
                    help="Record every test of the session into this runlog store "
                         "(one root run per test).")
    group.addoption("--runlog-record", action="store_true", default=False,
                    help="Record every test as a run (as @pytest.mark.runlog_record does).")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "runlog_record: record this test as a runlog root run; runlog.trace calls made "
        "during the test become its children (see runlog.pytest_plugin).")


def pytest_unconfigure(config: pytest.Config) -> None:
    store = config.stash.get(_SESSION_STORE, None)
    if store is not None:
        store.close()


def _session_store(config: pytest.Config) -> Store | None:
    path = config.getoption("--runlog-db")
    if not path:
        return None
    store = config.stash.get(_SESSION_STORE, None)
    if store is None:
        store = config.stash[_SESSION_STORE] = open_store(path)
        config.stash[_SESSION_ID] = str(uuid.uuid4())
    return store


@pytest.fixture
def runlog_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store per test; its path is reported when the test fails."""
    path = tmp_path / "runlog.db"
    store = open_store(path)
    request.node.user_properties.append(("runlog_db", str(path)))
    try:
        yield store
    finally:
        store.close()


def _wants_recording(request: pytest.FixtureRequest) -> bool:
    config = request.config
    return bool(request.node.get_closest_marker("runlog_record") is not None
                or config.getoption("--runlog-record") or config.getoption("--runlog-db")
                or "runlog_run" in request.fixturenames)


@pytest.fixture
def runlog_run(request: pytest.FixtureRequest) -> Run | None:
    """The run recording this test (recording is on for a test that asks for it)."""
    run: Run | None = request.getfixturevalue("_runlog_record")
    return run


@pytest.fixture(autouse=True)
def _runlog_record(request: pytest.FixtureRequest) -> Iterator[Run | None]:
    """Records the test as a run when asked (marker, option or ``runlog_run``).

    Autouse so the marker and options work without naming a fixture; a test that is not
    recorded pays one marker lookup and sets up nothing else.
    """
    if not _wants_recording(request):
        yield None
        return
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    store = _session_store(request.config)
    metadata: dict[str, str] = {"pytest_nodeid": request.node.nodeid}
    if store is None:
        store = request.getfixturevalue("runlog_store")
    else:
        metadata["pytest_session"] = request.config.stash[_SESSION_ID]
        request.node.user_properties.append(("runlog_db", store.location))
    if store.location != ":memory:":
        monkeypatch.setenv("RUNLOG_DB", os.fspath(store.location))
    scope = store.run(request.node.name, "chain", parent=None, tags=["pytest"],
                      metadata=metadata, inputs={"nodeid": request.node.nodeid})
    run = scope.__enter__()
    request.node.user_properties.append(("runlog_run", run.id))
    try:
        yield run
    finally:
        if not run.ended:
            reports = request.node.stash.get(_REPORTS, {})
            failed = next((r for r in reports.values() if r.failed), None)
            if failed is not None:
                message = failed.longreprtext.strip().splitlines()
                run.end({"outcome": "failed"}, error=ErrorInfo(
                    "pytest.Failed", message[-1] if message else "", failed.longreprtext))
            else:
                call = reports.get("call")
                run.end({"outcome": call.outcome if call is not None else "passed"})
        scope.__exit__(None, None, None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    if report.failed and report.when in ("setup", "call"):
        props = dict(item.user_properties)
        db = props.get("runlog_db")
        if db is not None:
            run_id = props.get("runlog_run")
            text = (f"runs recorded by this test are kept in {db}\n"
                    f"inspect them with: runlog runs --all --db {db}")
            if run_id is not None:
                text += f"\nthis test's run: runlog show {run_id} --db {db}"
            report.sections.append(("runlog", text))
    return report
