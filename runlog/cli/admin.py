"""Store administration: ``runlog migrate`` and ``runlog copy``."""

from __future__ import annotations

import click

from runlog.cli import cli
from runlog.cli.options import db_option
from runlog.store.copy import copy_store
from runlog.store.migrations import Migration
from runlog.store.migrations import migrate as do_migrate


@cli.command()
@db_option
def migrate(db: str) -> None:
    """Create the store if absent, or upgrade its schema to this runlog's version.

    \b
    Safe to run any time and from several hosts at once: each step runs in its own
    transaction with its version bump, and a store already current is left alone.
    A store newer than this runlog is refused, never touched.
    """

    def say(m: Migration) -> None:
        click.echo(f"applying {m.version}: {m.description}", err=True)

    report = do_migrate(db, progress=say)
    if report.created:
        click.echo(f"created {report.location} at schema version {report.after}")
    elif report.applied:
        click.echo(f"migrated {report.location} from schema version {report.before} to "
                   f"{report.after}")
    else:
        click.echo(f"{report.location} is at schema version {report.after}: up to date")


@cli.command()
@click.option("--from", "source", required=True, metavar="URL",
              help="The store to copy: a SQLite path, sqlite:///path or PostgreSQL URL.")
@click.option("--to", "destination", required=True, metavar="URL",
              help="An empty (or absent) store to fill; created if absent.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=1000,
              show_default=True, help="Events per destination transaction.")
def copy(source: str, destination: str, batch_size: int) -> None:
    """Copy a whole store to another place or backend, bytes and hash chains intact.

    \b
    Example: runlog copy --from runlog.db --to postgresql://me@db/runs?schema=runlog
    Seqs, bytes, digests and runs are reproduced exactly; every chain is checked on
    the way. The destination must be empty (use export/import to merge).
    """
    from runlog.cli.core import open_store

    open_store(source, flag="--from").close()  # a missing source is named as --from
    report = copy_store(source, destination, batch_size=batch_size)
    click.echo(f"copied {report.events} events of {report.runs} runs from {report.source} "
               f"to {report.destination} (seq 1..{report.last_seq})")
