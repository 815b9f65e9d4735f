"""``runlog tail``: follow runs live; ``runlog checkpoint``: fold the WAL back."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from runlog.api import Store
from runlog.cli import cli
from runlog.cli.core import open_store
from runlog.cli.options import db_option, filter_options, json_option
from runlog.cli.render import console, event_json_line, short
from runlog.errors import UnknownRunError
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
    printer = HumanPrinter(console())
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
@click.option("--trace", "trace_id", metavar="TRACE_ID", help="Follow one whole trace.")
@click.option("--after", type=int, default=None, metavar="SEQ",
              help="Resume after this seq (the cursor a previous tail printed). Default: 0 "
                   "with --run/--trace, otherwise from now.")
@click.option("--view", type=click.Choice(["raw", "log", "events"]), default="raw",
              show_default=True,
              help="raw: stored events; log: astream_log patches; events: astream_events v2 "
                   "(log/events need --run or --trace and end with the run).")
@click.option("--until-end", is_flag=True,
              help="Stop when the followed run (or trace) ends or is abandoned.")
@click.option("--idle-timeout", type=float, default=None, metavar="SECONDS",
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
    with open_store(db) as store:
        if after is None:
            after = 0 if (run_id or trace_id) else store.last_seq()
        options: dict[str, Any] = {}
        if view == "log":
            options = {"diff": not no_diff, "with_streamed_output_list": not no_streamed_list}
        try:
            t = store.tail(after=after, run_id=run_id, trace_id=trace_id, filter=filter,
                           view=view, until_end=until_end,  # type: ignore[arg-type]
                           idle_timeout=idle_timeout, **options)
        except ValueError as e:
            raise click.UsageError(str(e)) from None
        err = console(stderr=True)
        if run_id is not None:
            try:
                store.resolve_run_id(run_id)
            except UnknownRunError:
                err.print(f"[dim]runlog tail: waiting for run {escape(run_id)} to start "
                          "(a run that does not exist yet needs its full id)[/]")
        try:
            with t:
                _follow(store, t, as_json, view)
        except KeyboardInterrupt:
            sys.stdout.flush()
            err.print(f"runlog tail: interrupted; resume with --after {t.cursor}")
            raise SystemExit(130) from None
        err.print(f"[dim]runlog tail: stopped; resume with --after {t.cursor}[/]")


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
