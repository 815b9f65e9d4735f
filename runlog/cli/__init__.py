"""The ``runlog`` command: a thin layer over the library.

Each topic lives in its own module and registers its commands on :data:`cli`; shared
flags come from :mod:`runlog.cli.options`. Errors runlog raises on purpose become one
line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

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
        except RunlogError as e:
            raise click.ClickException(str(e)) from None
        except BrokenPipeError:  # `runlog replay ... | head`
            sys.stderr.close()
            raise SystemExit(0) from None


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
from runlog.cli import tail as _tail  # noqa: E402, F401
from runlog.cli import web as _web  # noqa: E402, F401
