"""Storage backends behind one contract (:class:`~runlog.store.base.Backend`).

:func:`open_backend` picks one from a location: a filesystem path or ``sqlite:///``
URL gives :class:`~runlog.store.sqlite.SQLiteBackend`, ``:memory:`` the in-process
:class:`~runlog.store.memory.MemoryBackend`, and a ``postgresql://`` /
``postgresql+psycopg://`` URL the PostgreSQL backend.
"""

from __future__ import annotations

import os

from runlog.errors import StoreError
from runlog.store.base import Backend

__all__ = ["Backend", "open_backend"]


def open_backend(target: str | os.PathLike[str], *, create: bool = True,
                 durable: bool = False) -> Backend:
    """Open (or create) the backend that ``target`` names."""
    text = os.fspath(target)
    if text == ":memory:":
        from runlog.store.memory import MemoryBackend

        return MemoryBackend()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme.startswith("postgres"):
        try:
            from runlog.store.postgres import PostgresBackend  # type: ignore[import-not-found,unused-ignore]
        except ImportError as e:  # pragma: no cover - depends on the install
            raise StoreError(f"the PostgreSQL backend is not available: {e}") from e
        return PostgresBackend(text, create=create, durable=durable)  # type: ignore[no-any-return,unused-ignore]
    if scheme == "sqlite" or scheme.startswith("sqlite+"):
        path = text.split("://", 1)[1]
        path = path[1:] if path.startswith("/") else path
        if not path or path == ":memory:":
            raise StoreError("use runlog.open(':memory:') for an in-memory store")
        from runlog.store.sqlite import SQLiteBackend

        return SQLiteBackend(path, create=create, durable=durable)
    if scheme:
        raise StoreError(
            f"unknown store URL scheme {scheme!r} in {text!r}; use a file path, "
            "sqlite:///path, :memory: or postgresql+psycopg://user@host/db"
        )
    from runlog.store.sqlite import SQLiteBackend

    return SQLiteBackend(text, create=create, durable=durable)
