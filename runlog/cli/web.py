"""``runlog serve``: the web viewer (runs list, run pages, live token streams)."""

from __future__ import annotations

import os
import sys
import webbrowser

import click
from rich.markup import escape

import runlog
from runlog.cli import cli
from runlog.cli.options import db_option
from runlog.cli.render import console


def _has_desktop() -> bool:
    """Whether opening a browser can show a window (not a text browser in this terminal)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@cli.command()
@db_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback exposes every run to the "
                   "network, without authentication.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="TCP port (0 picks a free one).")
@click.option("--open/--no-open", "open_browser", default=None,
              help="Open the page in a browser [default: open when a desktop session "
                   "is detected].")
def serve(db: str, host: str, port: int, open_browser: bool | None) -> None:
    """Browse runs and watch live runs token by token in a web browser.

    Starts a local web server for --db and prints its address. Pages update live
    while runs are recorded by any process; Ctrl-C stops the server.

    \b
    Example:
        runlog demo --db /tmp/demo.db
        runlog serve --db /tmp/demo.db
    """
    from runlog.web import is_loopback
    from runlog.web import serve as serve_web

    if open_browser is None:
        open_browser = _has_desktop()
    store = runlog.open(db, create=False)
    out = console()
    if not is_loopback(host):
        console(stderr=True).print(
            f"[yellow]warning[/]: serving on {host}: anyone who can reach this address "
            "can read every recorded run; there is no authentication")

    def ready(url: str) -> None:
        # One plain line first: scripts (and the tests) read the URL from it.
        click.echo(f"runlog web viewer: {url}", nl=True)
        sys.stdout.flush()
        out.print(f"[dim]store {escape(store.location)}; Ctrl-C to stop[/]")
        if open_browser:
            webbrowser.open(url)

    try:
        serve_web(store, host=host, port=port, on_ready=ready)
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its clean shutdown
        out.print("[dim]stopped[/]")
    finally:
        store.close()
