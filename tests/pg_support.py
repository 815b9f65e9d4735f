"""PostgreSQL for the test suite: one fresh schema per store, all dropped at the end.

``RUNLOG_TEST_POSTGRES_URL`` names the server (default: the local CI server). Every
store a test opens lives in its own schema ``runlog_test_<run>_<n>``, so tests never
see each other's events and a crashed run leaves nothing a later run could trip over
(``cleanup`` drops the run's schemas at the end of the session; a killed run leaves
its ``runlog_test_*`` schemas behind, harmless and safe to drop by hand).

When the server cannot be reached the PostgreSQL tests *fail* if
``RUNLOG_REQUIRE_POSTGRES=1`` (``.ci/run`` sets it: CI must never pass by skipping),
and are skipped with a loud reason otherwise (a laptop without PostgreSQL).
"""

from __future__ import annotations

import itertools
import os
import uuid

import psycopg
import pytest

from runlog.store.postgres import parse_url

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PREFIX = "runlog_test_"

_run = uuid.uuid4().hex[:10]
_counter = itertools.count(1)
_created: list[str] = []
_reachable: str | None = None  # "" when reachable, else the reason


def base_url() -> str:
    return os.environ.get("RUNLOG_TEST_POSTGRES_URL", DEFAULT_URL)


def libpq_url() -> str:
    """The server URL as psycopg takes it (no SQLAlchemy driver suffix)."""
    url, _ = parse_url(base_url())
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def required() -> bool:
    return os.environ.get("RUNLOG_REQUIRE_POSTGRES") == "1"


def ensure_server() -> None:
    """Fail (CI) or skip (locally) when PostgreSQL is unreachable, saying why."""
    global _reachable
    if _reachable is None:
        try:
            with psycopg.connect(libpq_url(), connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            _reachable = ""
        except psycopg.Error as e:
            _reachable = f"PostgreSQL at {base_url()} is unreachable: {e}".strip()
    if _reachable:
        if required():
            pytest.fail(f"{_reachable} (RUNLOG_REQUIRE_POSTGRES=1: PostgreSQL tests must "
                        "run; start the server: pg_ctlcluster --skip-systemctl-redirect "
                        "$(ls /etc/postgresql) main start)", pytrace=False)
        pytest.skip(f"SKIPPING POSTGRESQL TESTS: {_reachable}; set RUNLOG_TEST_POSTGRES_URL "
                    "or start the server")


_by_key: dict[str, str] = {}


def new_schema(key: str | None = None) -> str:
    """A schema name no other store of this or any other run uses.

    The same ``key`` (a test's ``tmp_path``) gives the same schema, so opening "the
    store of this test" twice reopens it, as a SQLite path would.
    """
    ensure_server()
    if key is not None and key in _by_key:
        return _by_key[key]
    name = f"{PREFIX}{_run}_{next(_counter)}"
    _created.append(name)
    if key is not None:
        _by_key[key] = name
    return name


def store_url(key: str | None = None) -> str:
    """A URL for a fresh, empty store (its schema is created on open)."""
    name = new_schema(key)
    url = base_url()
    return f"{url}{'&' if '?' in url else '?'}schema={name}"


def cleanup() -> None:
    """Drop the schemas this run created (called at the end of the session)."""
    if not _created or _reachable:
        return
    try:
        with psycopg.connect(libpq_url(), autocommit=True, connect_timeout=5) as conn:
            for name in _created:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')  # type: ignore[arg-type]
    except psycopg.Error:
        pass
    _created.clear()
