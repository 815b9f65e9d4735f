"""Fixtures for the runlog-langgraph tests: LangGraph's async side is asyncio-only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import runlog


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def lg_store(tmp_path: object) -> Iterator[runlog.Store]:
    """A fresh SQLite store (the default backend) per test."""
    import pathlib
    assert isinstance(tmp_path, pathlib.Path)
    store = runlog.open(str(tmp_path / "lg.db"))
    try:
        yield store
    finally:
        store.close()
