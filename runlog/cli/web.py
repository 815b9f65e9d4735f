"""``runlog serve``: the web viewer (runs list, run pages, live token streams)."""

from __future__ import annotations

import errno
import os
import socket
import sys
import webbrowser

import click
from rich.markup import escape

import runlog
from runlog.cli import cli
from runlog.cli.options import db_option, option_error, say
from runlog.cli.render import console

_FREE_PORT_HINT = "pick another with --port, or --port 0 for a free one"


def check_bind(host: str, port: int) -> None:
    """Fail with one line naming --host or --port when the server could not listen.

    The address is bound once here, before the store and the server start, so a busy
    port or an unknown host gives a message and a hint instead of uvicorn's log line.
    (Another process can still take the port in between; then uvicorn's own line and
    a non-zero exit are what remains.)
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        why = e.strerror if isinstance(e, socket.gaierror) else str(e)
        raise option_error("--host", f"cannot resolve {host!r} ({why}); give an address "
                           "of this machine: 127.0.0.1 (the default), ::1, or 0.0.0.0 "
                           "for every interface") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind(addr)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise option_error("--port", f"port {port} on {host} is already in use "
                                   f"(another server is listening there); "
                                   f"{_FREE_PORT_HINT}") from None
            if e.errno == errno.EACCES:
                raise option_error("--port", f"not allowed to listen on port {port} "
                                   f"(ports below 1024 need privileges); "
                                   f"{_FREE_PORT_HINT}") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise option_error("--host", f"{host} is not an address of this machine; "
                                   "use 127.0.0.1 (the default), or 0.0.0.0 for every "
                                   "interface") from None
            raise option_error("--host", f"cannot listen on {host} port {port}: "
                               f"{e.strerror or e}; {_FREE_PORT_HINT}") from None


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
    check_bind(host, port)
    store = runlog.open(db, create=False)
    out = console()
    if not is_loopback(host):
        say(f"[yellow]warning[/]: serving on {escape(host)}: anyone who can reach this "
            "address can read every recorded run; there is no authentication")

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
    except SystemExit as e:  # uvicorn exits when it cannot start (a port taken meanwhile)
        if e.code in (None, 0):
            raise
        raise click.ClickException(
            f"the web server could not start on {host} port {port} (see uvicorn's line "
            f"above); {_FREE_PORT_HINT}") from None
    finally:
        store.close()
