"""pytest plugin (entry point ``pytest11``): a fresh runlog store per test.

``runlog_store`` gives each test its own SQLite store in the test's temporary
directory; when the test fails, the path is added to the report so the runs it
recorded can be inspected with ``runlog show --db PATH``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from runlog.api import Store
from runlog.api import open as open_store

__all__ = ["runlog_store"]


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        for key, value in item.user_properties:
            if key == "runlog_db":
                report.sections.append(
                    ("runlog", f"runs recorded by this test are kept in {value}\n"
                               f"inspect them with: runlog runs --all --db {value}"))
    return report
