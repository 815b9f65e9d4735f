"""Every error runlog raises on purpose derives from :class:`RunlogError`.

The tree::

    RunlogError
    ├── EncodingError          a value the codec cannot store losslessly (also a TypeError)
    ├── StoreError             anything about the store itself
    │   ├── StoreNotFoundError     no store at that path/URL (and create=False)
    │   ├── NotARunlogStoreError   the file/database exists but holds something else
    │   ├── CorruptStoreError      the file is damaged or not a database at all
    │   ├── SchemaVersionError     written by a newer runlog; upgrade, or `runlog migrate`
    │   ├── AppendOnlyError        something tried to update or delete a committed event
    │   ├── WriteError             the background writer could not commit (disk full, ...)
    │   │   ├── NotCommittedError      a root run ended / flush returned with events uncommitted
    │   │   └── EventRejectedError     the store refused one event (it is not stored)
    │   └── StoreUnavailableError  the database server cannot be reached (try again later)
    ├── UnknownRunError        no run with that id (also a LookupError)
    ├── RunStateError          misuse of a run handle (stream after end, end twice)
    ├── InvalidEventError      an event the store can never hold (time range, size); also
    │                          a ValueError; raised at the call, nothing is queued
    ├── DuplicateRunError      a run id already in use; raised before anything is written
    ├── ImportConflictError    an import would duplicate events already in the store
    └── ExportFileError        an export file is truncated, edited or not an export

Messages say what happened, why it matters and what to do, because most of them
reach a person through the CLI as one line.
"""

from __future__ import annotations


class RunlogError(Exception):
    """Base class of every error raised by runlog on purpose."""


class EncodingError(RunlogError, TypeError):
    """A value cannot be stored without changing it, and no encoder is registered for it."""


class StoreError(RunlogError):
    """The store cannot be opened, read or written."""


class StoreNotFoundError(StoreError):
    """No runlog store exists at the given location."""


class NotARunlogStoreError(StoreError):
    """The location holds a database that runlog did not create."""


class CorruptStoreError(StoreError):
    """The file is not a readable database (damaged, truncated or another format)."""


class SchemaVersionError(StoreError):
    """The store was written with a schema this version of runlog does not know."""


class AppendOnlyError(StoreError):
    """A committed event was about to be updated or deleted; the log is append-only."""


class WriteError(StoreError):
    """The background writer failed to commit; the events stay queued and are retried."""


class StoreUnavailableError(StoreError):
    """The store's server cannot be reached now (restart, dropped connection, network).

    Nothing is lost: committed events stay committed and a reader can retry the same
    read. A web front end answers 503 for it; ``store.tail`` waits and reconnects.
    """


class NotCommittedError(WriteError):
    """Events were not committed in time (a held write lock, a failing disk).

    ``pending`` is how many events of this writer were still uncommitted when it was
    raised; they stay queued and are retried, but are not acknowledged.
    """

    def __init__(self, message: str, pending: int) -> None:
        self.pending = pending
        super().__init__(message)


class EventRejectedError(WriteError):
    """The store refused an event (a constraint it violates); that event is not stored.

    The writer committed the rest of its batch; the run's later events are refused too,
    since they would chain onto an event the store does not have.
    """


class UnknownRunError(RunlogError, LookupError):
    """No run with the given id exists in the store."""

    def __init__(self, run_id: str, where: str = "") -> None:
        self.run_id = run_id
        place = f" in {where}" if where else ""
        super().__init__(
            f"no run {run_id}{place}; list the runs with `runlog runs` "
            "(a prefix of at least 8 characters of the id is enough)"
        )


class RunStateError(RunlogError):
    """A run handle was used in a way its state does not allow (e.g. stream after end)."""


class InvalidEventError(RunlogError, ValueError):
    """An event no store can hold (time outside int64 microseconds, over the size limit)."""


class DuplicateRunError(RunlogError):
    """A run was started with an id that another run already has."""


class ImportConflictError(RunlogError):
    """Importing would write events whose runs are already in the store."""


class ExportFileError(RunlogError, ValueError):
    """An export file cannot be imported or verified: truncated, edited, or not an export."""
