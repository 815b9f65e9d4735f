"""The ``runlog`` command: a thin layer over the library.

Each topic lives in its own module and registers its commands on :data:`cli`; shared
flags come from :mod:`runlog.cli.options`. Errors runlog raises on purpose become one
line on stderr and exit status 1, never a traceback; so do the operating system's
(a file that cannot be written) and, as a last resort, any other exception (with a
hint that it is a bug; ``RUNLOG_TRACEBACK=1`` shows the traceback). Ctrl-C exits with
status 130 and one line (commands that can say what was done catch it themselves).
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

import click

from runlog.errors import RunlogError

__all__ = ["cli", "main"]


class _Group(click.Group):
    """Turns runlog's own errors into one clear line and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except RunlogError as e:  # one line, even when a driver's message has several
            raise click.ClickException(
                " ".join(line.strip() for line in str(e).splitlines())) from None
        except BrokenPipeError:  # `runlog replay ... | head`
            sys.stderr.close()
            raise SystemExit(0) from None
        except KeyboardInterrupt:
            click.echo(f"\nrunlog {ctx.invoked_subcommand or ''}: interrupted".rstrip(),
                       err=True)
            raise SystemExit(130) from None
        except OSError as e:
            if e.errno == errno.EPIPE:
                raise
            raise click.ClickException(os_error_line(e)) from None
        except Exception as e:
            if os.environ.get("RUNLOG_TRACEBACK"):
                raise
            raise click.ClickException(
                f"unexpected {type(e).__name__}: {e} (a bug in runlog; please report it, "
                "with the output of the same command run with RUNLOG_TRACEBACK=1)") from None


def os_error_line(e: OSError) -> str:
    """An operating-system error as one line: what failed on which file, and why."""
    what = e.strerror or str(e)
    if e.filename is not None and e.filename2 is not None:
        return f"cannot move {e.filename} to {e.filename2}: {what}"
    if e.filename is not None:
        return f"cannot use {e.filename}: {what}"
    return what


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runlog-engine", prog_name="runlog")
def cli() -> None:
    """Record, follow, replay and export runs of LLM and agent pipelines.

    \b
    Start with:  runlog demo
    Then:        runlog runs            (what was recorded)
                 runlog show RUN_ID     (one run as a tree)
                 runlog replay RUN_ID   (its events as JSON lines)
    """


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="runlog")


# Command modules register themselves on `cli` when imported.
from runlog.cli import admin as _admin  # noqa: E402, F401
from runlog.cli import core as _core  # noqa: E402, F401
from runlog.cli import diff as _diff  # noqa: E402, F401
from runlog.cli import export as _export  # noqa: E402, F401
from runlog.cli import lifecycle as _lifecycle  # noqa: E402, F401
from runlog.cli import tail as _tail  # noqa: E402, F401
from runlog.cli import web as _web  # noqa: E402, F401
