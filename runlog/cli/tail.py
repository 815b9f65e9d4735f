"""``runlog tail``: follow runs live; ``runlog checkpoint``: fold the WAL back."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from runlog.api import Store
from runlog.cli import cli
from runlog.cli.core import open_store
from runlog.cli.options import (
    db_option,
    filter_options,
    is_full_uuid,
    json_option,
    option_error,
    resolve_trace_id,
    say,
)
from runlog.cli.render import console, event_json_line, short
from runlog.errors import (
    CorruptStoreError,
    NotARunlogStoreError,
    RunlogError,
    StoreNotFoundError,
    UnknownRunError,
)
from runlog.events import Event
from runlog.filters import Filter
from runlog.tail import Tail, TailNotice

__all__ = ["HumanPrinter"]


class HumanPrinter:
    """Live output for a person: an indented run tree, tokens inline, errors red.

    Each run's start opens a line indented by its depth; streamed text (tokens and
    string output chunks) is written inline as it arrives; the end shows status and
    duration. Depths come from the start events seen (a run whose start came before
    the cursor is shown at depth 0).
    """

    def __init__(self, out: Console) -> None:
        self.out = out
        self.depth: dict[str, int] = {}
        self.started: dict[str, int] = {}
        self.inline: str | None = None  # run whose streamed text is being written

    def _indent(self, run_id: str) -> str:
        return "  " * self.depth.get(run_id, 0)

    def _break(self) -> None:
        if self.inline is not None:
            self.out.print()
            self.inline = None

    def event(self, e: Event) -> None:
        rid = e.run_id
        if e.kind == "start":
            self._break()
            parent = e.parent_id
            self.depth[rid] = self.depth[parent] + 1 if parent in self.depth else 0
            self.started[rid] = e.time_us
            inputs = e.data
            text = (f"{self._indent(rid)}[bold]▶ {escape(e.name)}[/] [dim]{escape(e.run_type)}"
                    f" {rid}[/]")
            if inputs not in (None, {}, ""):
                text += f" [dim]{escape(short(inputs, 60))}[/]"
            self.out.print(text)
            return
        if e.kind == "stream":
            piece: Any = e.data
            if e.channel == "token" and isinstance(piece, dict):
                piece = piece.get("token")
            if e.channel in ("token", "output") and isinstance(piece, str):
                if self.inline != rid:
                    self._break()
                    self.out.print(self._indent(rid) + "  ", end="")
                    self.inline = rid
                self.out.print(piece, end="", markup=False, highlight=False)
                return
            self._break()
            label = e.data.get("name", "event") if e.channel == "custom" and isinstance(
                e.data, dict) else (e.channel or "output")
            value = e.data.get("data") if e.channel == "custom" and isinstance(
                e.data, dict) else e.data
            self.out.print(f"{self._indent(rid)}  [cyan]• {escape(str(label))}[/] "
                           f"{escape(short(value))}")
            return
        self._break()
        took = ""
        if rid in self.started:
            ms = (e.time_us - self.started[rid]) / 1000
            took = f" [dim]{ms:.1f} ms[/]" if ms < 1000 else f" [dim]{ms / 1000:.2f} s[/]"
        err = e.error
        if err is not None:
            self.out.print(f"{self._indent(rid)}[bold red]✖ {escape(e.name)} error[/]{took} "
                           f"[red]{escape(err.type)}: {escape(short(err.message))}[/]")
        else:
            out = e.data
            preview = f" [dim]→ {escape(short(out, 60))}[/]" if out is not None else ""
            self.out.print(f"{self._indent(rid)}[green]✔ {escape(e.name)} ok[/]{took}{preview}")

    def notice(self, n: TailNotice) -> None:
        self._break()
        self.out.print(f"[bold magenta]⚠ run {escape(n.name)} {n.run_id} abandoned[/]: its "
                       "writer stopped heartbeating with the run still open "
                       "(process killed or hung)")

    def finish(self) -> None:
        self._break()


def _follow(store: Store, t: Tail, as_json: bool, view: str) -> None:
    out = sys.stdout.buffer
    if view != "raw":
        from runlog.reducers import view_json_line

        for item in t:
            out.write(item.json_line() if isinstance(item, TailNotice) else view_json_line(item))
            out.flush()
        return
    if as_json:
        for item in t:
            out.write(event_json_line(item) if isinstance(item, Event) else item.json_line())
            if not t.buffered:  # about to wait: let the reader see everything so far
                out.flush()
        out.flush()
        return
    # Lines are never wrapped by us (the terminal folds them): a notice or an error
    # stays one line in a pipe or a log file.
    out_console = console()
    out_console.soft_wrap = True
    printer = HumanPrinter(out_console)
    try:
        for item in t:
            if isinstance(item, Event):
                printer.event(item)
            else:
                printer.notice(item)
    finally:
        printer.finish()


@cli.command()
@db_option
@json_option
@filter_options
@click.option("--run", "run_id", metavar="RUN_ID",
              help="Follow this run and its descendants (waits for it if it has not started).")
@click.option("--trace", "trace_id", metavar="TRACE_ID",
              help="Follow one whole trace (its id, or a unique prefix/suffix; waits for it "
                   "if it has not started).")
@click.option("--after", type=click.IntRange(min=0), default=None, metavar="SEQ",
              help="Resume after this seq (the cursor a previous tail printed). Default: 0 "
                   "with --run/--trace, otherwise from now.")
@click.option("--view", type=click.Choice(["raw", "log", "events"]), default="raw",
              show_default=True,
              help="raw: stored events; log: astream_log patches; events: astream_events v2 "
                   "(log/events need --run or --trace and end with the run).")
@click.option("--until-end", is_flag=True,
              help="Stop when the followed run (or trace) ends or is abandoned.")
@click.option("--idle-timeout", type=click.FloatRange(min=0), default=None,
              metavar="SECONDS",
              help="Stop after this many seconds without a new event.")
@click.option("--no-diff", is_flag=True, help="log view: cumulative RunLog states.")
@click.option("--no-streamed-list", is_flag=True,
              help="log view: with_streamed_output_list=False.")
def tail(db: str, as_json: bool, filter: Filter | None, run_id: str | None,
         trace_id: str | None, after: int | None, view: str, until_end: bool,
         idle_timeout: float | None, no_diff: bool, no_streamed_list: bool) -> None:
    """Follow events live as any process commits them.

    A person sees the run tree grow, tokens inline as they stream and errors in red;
    --json prints the same JSON lines as `runlog replay` (a run that was abandoned gets
    a last line {"notice": "abandoned", ...}). Ctrl-C stops and prints on stderr the
    cursor to resume from with --after; nothing is skipped or repeated.

    \b
    Examples:
        runlog tail                          (everything, from now)
        runlog tail --run 0196f2c1 --until-end
        runlog tail --include-type chat_model --json --after 1200
    """
    if run_id is not None and trace_id is not None:
        raise click.UsageError("give --run or --trace, not both: a tail follows one of them")
    if until_end and run_id is None and trace_id is None:
        raise click.UsageError("--until-end needs --run or --trace: the run whose end to "
                               "wait for")
    if view != "raw" and run_id is None and trace_id is None:
        raise click.UsageError(f"--view {view} folds one run: give --run or --trace")
    store, created_after_start = _open_waiting(db, idle_timeout)
    if store is None:
        say(f"[dim]runlog tail: no store at {escape(db)} after {idle_timeout:g} s "
            "(--idle-timeout); stopped[/]")
        return
    with store:
        if after is None:
            after = 0 if (run_id or trace_id or created_after_start) else store.last_seq()
        target = _target(store, run_id, trace_id, until_end)
        if run_id is not None:
            run_id = target
        elif trace_id is not None:
            trace_id = target
        options: dict[str, Any] = {}
        if view == "log":
            options = {"diff": not no_diff, "with_streamed_output_list": not no_streamed_list}
        try:
            t = store.tail(after=after, run_id=run_id, trace_id=trace_id, filter=filter,
                           view=view, until_end=until_end,  # type: ignore[arg-type]
                           idle_timeout=idle_timeout, **options)
        except ValueError as e:  # pragma: no cover - the checks above come first
            raise click.UsageError(str(e)) from None
        err = console(stderr=True)
        try:
            with t:
                _follow(store, t, as_json, view)
        except KeyboardInterrupt:
            sys.stdout.flush()
            err.print(f"runlog tail: interrupted; resume with --after {t.cursor}", soft_wrap=True)
            raise SystemExit(130) from None
        err.print(f"[dim]runlog tail: stopped; resume with --after {t.cursor}[/]", soft_wrap=True)


def _target(store: Store, run_id: str | None, trace_id: str | None,
            until_end: bool) -> str | None:
    """The full id of the followed run or trace, saying on stderr what the tail waits for.

    An id that matches nothing yet is waited for only when it is a full id (a UUID,
    the form runlog's ids take): a prefix, a suffix or a typo could never become
    the id of a run that starts later, so it is an error instead of a tail that
    waits forever.
    """
    if run_id is None and trace_id is None:
        return None
    what, flag = ("run", "--run") if run_id is not None else ("trace", "--trace")
    given = (run_id if run_id is not None else trace_id) or ""
    full: str | None
    if run_id is not None:
        try:
            full = store.resolve_run_id(run_id)
        except UnknownRunError:
            full = None
        except RunlogError as e:  # several runs match
            raise option_error("--run", str(e)) from None
    else:
        full = resolve_trace_id(store, given, missing_ok=True)
    ending = (" until its root run ends (or is abandoned)" if what == "trace" else
              " until it ends (or is abandoned)") if until_end else ""
    if full is None:
        if not is_full_uuid(given.strip()):
            raise option_error(
                flag, f"no {what} {given!r} in {store.location}, and it is not a full id, so "
                f"no {what} that starts later can have it: give 8+ characters of an existing "
                f"{what}'s id (`runlog runs` lists them), or the full id of one to wait for")
        say(f"[dim]runlog tail: waiting for {what} {escape(given.strip())} to start, then "
            f"following it{ending}[/]")
        return given.strip()
    if until_end:
        say(f"[dim]runlog tail: following {what} {escape(full)}{ending}[/]")
    return full


def _open_waiting(db: str, idle_timeout: float | None) -> tuple[Store | None, bool]:
    """Open the store, waiting for it to be created if it does not exist yet.

    Returns the store (None if ``idle_timeout`` passed first) and whether it was
    created while we waited (the tail then starts from its first event). A file that
    appears is given a few seconds to become a store: its creator may still be
    writing the schema.
    """
    try:
        return open_store(db), False
    except StoreNotFoundError:
        pass
    say(f"[dim]runlog tail: no store at {escape(db)} yet; waiting for it to be created (by "
        f"the first run recorded into it, or `runlog migrate --db {escape(db)}`)[/]")
    started = time.monotonic()
    appeared: float | None = None
    while True:
        time.sleep(0.1)
        now = time.monotonic()
        if idle_timeout is not None and now - started >= idle_timeout:
            return None, False
        try:
            return open_store(db), True
        except StoreNotFoundError:
            continue
        except (NotARunlogStoreError, CorruptStoreError):
            if appeared is None:
                appeared = now
            if now - appeared > 5.0:
                raise


@cli.command()
@db_option
def checkpoint(db: str) -> None:
    """Fold a SQLite store's WAL back into the database file and truncate it.

    SQLite does this by itself every 1000 pages (about 4 MB) whenever no reader holds
    an old snapshot; runlog's readers (tails included) never do. Run this to reclaim
    the WAL's disk space at once, e.g. after a large import.
    """
    with open_store(db) as store:
        fold = getattr(store.backend, "checkpoint", None)
        if fold is None:
            raise click.ClickException(
                f"{store.location} is not a SQLite store; only SQLite has a WAL to checkpoint")
        fold()
        console().print(f"checkpointed {store.location}")
