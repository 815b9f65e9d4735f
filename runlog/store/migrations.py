"""Schema creation and versioned migrations, one registry for every SQL backend.

A store records its schema version in ``meta.schema_version``. Creating a store runs
the shared table declarations (:mod:`runlog.store.schema`) plus each dialect's extras;
upgrading one runs, in order, every registered :class:`Migration` whose version is
above the store's, each in its own transaction together with the version bump, so an
interrupted upgrade leaves the store at a consistent earlier version (SQLite and
PostgreSQL both have transactional DDL).

Why not alembic: runlog's schema is four tables whose migrations must run from a
library call and a CLI command against stores nobody configured an ``alembic.ini``
for, on two dialects whose extras differ (SQLite triggers, PostgreSQL JSONB/GIN and a
counter row). A list of per-dialect SQL steps keyed by version is all that needs, and
it keeps the statements reviewable next to the version they produce.

The compact layout (``meta.layout`` = ``compact``) numbers its own versions: schema 2
(as runlog before layout code 7 made it) and schema 3
(:data:`runlog.store.layout.BARE_SCHEMA_VERSION`, as new compact stores are made), whose
stores may hold code-7 rows (a token without its JSON quotes). Its 2 -> 3 step changes no table
and no row: a 2-store's rows are all valid at 3, only its writer starts storing code 7
after it, so the step is the version bump alone (:func:`_upgrade_compact`), which
runlog older than schema 3 then refuses. Older runlog that opened the store before the
bump checked the version then: stop its readers (tails, viewers) before migrating.

Adding a migration: bump :data:`runlog.store.base.SCHEMA_VERSION`, append a
``Migration(version=N, ...)`` with SQL for ``"sqlite"`` and ``"postgresql"``, and make
the creation DDL produce the same end state (creation never replays migrations).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from runlog.errors import SchemaVersionError, StoreError
from runlog.store import schema
from runlog.store.base import SCHEMA_VERSION
from runlog.store.layout import BARE_SCHEMA_VERSION

__all__ = [
    "MIGRATIONS",
    "Migration",
    "MigrationReport",
    "create_schema_sql",
    "migrate",
    "pending_migrations",
]

DIALECTS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Migration:
    """One step: the SQL that takes a store from ``version - 1`` to ``version``."""

    version: int
    description: str
    sql: dict[str, Sequence[str]] = field(default_factory=dict)
    """Statements per dialect name ("sqlite", "postgresql"); every dialect must be given."""


MIGRATIONS: list[Migration] = []
"""Every migration after the first schema (version 1 is what creation makes)."""


@dataclass(frozen=True)
class MigrationReport:
    """What :func:`migrate` did."""

    location: str
    before: int
    after: int
    applied: tuple[Migration, ...]
    created: bool


def create_schema_sql(dialect_name: str) -> list[str]:
    """The DDL that creates a store of the current version on one dialect."""
    dialect: Dialect
    if dialect_name == "sqlite":
        dialect = sqlite_dialect.dialect()
    elif dialect_name == "postgresql":
        dialect = pg_dialect.dialect()  # type: ignore[no-untyped-call]
    else:
        raise ValueError(f"no runlog schema for dialect {dialect_name!r}")
    out: list[str] = []
    for table in schema.metadata.sorted_tables:
        out.append(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)))
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            out.append(str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect)))
    if dialect_name == "postgresql":
        from runlog.store.postgres import pg_extras_ddl

        out.extend(pg_extras_ddl())
    else:
        out.extend(schema.APPEND_ONLY_TRIGGERS["sqlite"])
    return out


def pending_migrations(current: int, registry: Sequence[Migration] | None = None
                       ) -> list[Migration]:
    """The steps that take a store at ``current`` to the newest version, in order."""
    steps = sorted(MIGRATIONS if registry is None else registry, key=lambda m: m.version)
    return [m for m in steps if m.version > current]


def _read_version(conn: Connection) -> int:
    row = conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).first()
    return int(row[0]) if row else 0


def migrate(
    location: str,
    *,
    target: int | None = None,
    registry: Sequence[Migration] | None = None,
    progress: Callable[[Migration], None] | None = None,
) -> MigrationReport:
    """Create the store at ``location`` if absent, else upgrade it to ``target``.

    ``location`` is anything :func:`runlog.open` takes except ``:memory:``. Each step
    runs in its own transaction with its version bump. A store newer than this runlog
    is refused (:class:`~runlog.errors.SchemaVersionError`), never touched.
    """
    from runlog.store import open_backend

    steps_all = sorted(MIGRATIONS if registry is None else registry, key=lambda m: m.version)
    newest = max([SCHEMA_VERSION, *(m.version for m in steps_all)])
    compact_target = target  # the compact layout's versions are its own (module doc)
    target = newest if target is None else target
    url, dialect_name, display = _sqlalchemy_url(location)
    engine = create_engine(url, connect_args=_connect_args(location))
    try:
        before = 0
        compact = False
        with engine.connect() as conn:
            existed = _has_store(conn, dialect_name)
            if existed:
                before = _read_version(conn)
                compact = conn.execute(text(
                    "SELECT 1 FROM meta WHERE key = 'layout' AND value = :v"),
                    {"v": schema.COMPACT_LAYOUT}).first() is not None
            conn.rollback()
        if compact:
            return _upgrade_compact(engine, dialect_name, display, before, compact_target,
                                    progress)
        if not existed:
            # Creation is the backends' job (the same code path as runlog.open).
            open_backend(location, create=True).close()
            with engine.connect() as conn:  # the layout's version (compact: 3)
                created = _read_version(conn)
            return MigrationReport(display, 0, created, (), True)
        if before > newest:
            raise SchemaVersionError(
                f"{display} uses runlog schema {before}, newer than this runlog "
                f"understands ({newest}); upgrade runlog-engine")
        applied: list[Migration] = []
        for m in pending_migrations(before, steps_all):
            if m.version > target:
                break
            if dialect_name not in m.sql:
                raise StoreError(f"migration {m.version} ({m.description}) has no SQL for "
                                 f"{dialect_name}; this is a runlog bug, please report it")
            if progress is not None:
                progress(m)
            with engine.begin() as conn:
                _lock_ddl(conn, dialect_name)
                if _read_version(conn) >= m.version:  # someone else applied it meanwhile
                    continue
                for stmt in m.sql[dialect_name]:
                    conn.exec_driver_sql(stmt)
                conn.execute(text("UPDATE meta SET value = :v WHERE key = 'schema_version'"),
                             {"v": str(m.version)})
            applied.append(m)
        with engine.connect() as conn:
            after = _read_version(conn)
        return MigrationReport(display, before, after, tuple(applied), False)
    finally:
        engine.dispose()


COMPACT_BARE = Migration(
    version=BARE_SCHEMA_VERSION,
    description="compact layout: token rows without their JSON quotes (layout code 7); "
                "no row changes, runlog before schema 3 refuses the store",
    sql={"sqlite": (), "postgresql": ()})
"""The compact layout's one step (module docstring): the version bump alone."""


def _upgrade_compact(engine: Engine, dialect_name: str, display: str, before: int,
                     target: int | None, progress: Callable[[Migration], None] | None
                     ) -> MigrationReport:
    """:func:`migrate` of a compact store: 2 -> 3 by bumping the version, in one
    transaction that re-reads it (another host may have done it meanwhile)."""
    if before > BARE_SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{display} uses runlog schema {before} (compact layout), newer than this "
            f"runlog understands ({BARE_SCHEMA_VERSION}); upgrade runlog-engine")
    if before >= BARE_SCHEMA_VERSION or (target is not None and target < BARE_SCHEMA_VERSION):
        return MigrationReport(display, before, before, (), False)
    if progress is not None:
        progress(COMPACT_BARE)
    with engine.begin() as conn:
        _lock_ddl(conn, dialect_name)
        applied = _read_version(conn) < BARE_SCHEMA_VERSION
        if applied:
            conn.execute(text("UPDATE meta SET value = :v WHERE key = 'schema_version'"),
                         {"v": str(BARE_SCHEMA_VERSION)})
    return MigrationReport(display, before, BARE_SCHEMA_VERSION,
                           (COMPACT_BARE,) if applied else (), False)


def _lock_ddl(conn: Connection, dialect_name: str) -> None:
    """PostgreSQL: one migrating host per schema at a time (a transaction-scoped
    advisory lock, released by the step's commit); SQLite's write lock does this."""
    if dialect_name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(current_schema()"
                          " || '\\:runlog-ddl'))"))


def _has_store(conn: Connection, dialect_name: str) -> bool:
    if dialect_name == "sqlite":
        rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))
    else:
        rows = conn.execute(text("SELECT table_name FROM information_schema.tables "
                                 "WHERE table_schema = current_schema()"))
    names = {r[0] for r in rows}
    return "meta" in names and "events" in names


def _sqlalchemy_url(location: str) -> tuple[str, str, str]:
    """(SQLAlchemy URL, dialect name, display text) for a store location."""
    import os

    if location == ":memory:":
        raise StoreError("an in-memory store has no schema to migrate")
    scheme = location.split("://", 1)[0].lower() if "://" in location else ""
    if scheme.startswith("postgres"):
        from runlog.store.postgres import parse_url

        url, schema_name = parse_url(location)
        from sqlalchemy.engine import make_url

        display = make_url(url).render_as_string(hide_password=True)
        if schema_name:
            display += f" (schema {schema_name})"
        return url, "postgresql", display
    if scheme == "sqlite" or scheme.startswith("sqlite+"):
        path = location.split("://", 1)[1]
        path = path[1:] if path.startswith("/") else path
    elif scheme:
        raise StoreError(f"unknown store URL scheme {scheme!r} in {location!r}")
    else:
        path = location
    return f"sqlite:///{os.path.abspath(path)}", "sqlite", path


def _connect_args(location: str) -> dict[str, str]:
    scheme = location.split("://", 1)[0].lower() if "://" in location else ""
    if not scheme.startswith("postgres"):
        return {}
    from runlog.store.postgres import parse_url, search_path_option

    _, schema_name = parse_url(location)
    return {"options": search_path_option(schema_name)} if schema_name else {}
