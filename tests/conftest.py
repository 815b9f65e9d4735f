"""Fixtures shared by the whole suite.

``store`` is parametrised over every backend, so a test written once runs against the
in-memory oracle, SQLite and PostgreSQL (see tests/test_store_contract.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pg_support
import pytest
from hypothesis import HealthCheck, Verbosity, settings

import runlog

settings.register_profile("dev", max_examples=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=120, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("debug", max_examples=10, deadline=None, verbosity=Verbosity.verbose)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "langchain" / "golden"

BACKENDS = ["memory", "sqlite", "postgres"]


def make_store(kind: str, tmp_path: Path, **kwargs: object) -> runlog.Store:
    """A fresh, empty store of one backend kind."""
    if kind == "memory":
        return runlog.open(":memory:", **kwargs)  # type: ignore[arg-type]
    if kind == "sqlite":
        return runlog.open(tmp_path / "runs.db", **kwargs)  # type: ignore[arg-type]
    if kind == "postgres":  # a schema of its own per tmp_path (tests/pg_support.py)
        return runlog.open(pg_support.store_url(str(tmp_path)), **kwargs)  # type: ignore[arg-type]
    raise ValueError(kind)


def pytest_sessionfinish(session: pytest.Session) -> None:
    pg_support.cleanup()  # drop this run's PostgreSQL schemas


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(backend_kind: str, tmp_path: Path) -> Iterator[runlog.Store]:
    s = make_store(backend_kind, tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[runlog.Store]:
    s = runlog.open(tmp_path / "runs.db")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def wide_sqlite_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """New SQLite stores in the wide layout (schema 1), also in subprocesses: for tests
    that edit that layout's columns directly (tests/test_format2_compact.py edits the
    compact layout's)."""
    monkeypatch.setenv("RUNLOG_SQLITE_LAYOUT", "wide")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Async tests run on asyncio and on trio."""
    return str(request.param)
