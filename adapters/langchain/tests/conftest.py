"""Fixtures for the runlog-langchain tests: LangChain is asyncio-only."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
