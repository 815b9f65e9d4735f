"""The public API is one declared list (runlog.__all__), and the CLI documents itself."""

from __future__ import annotations

import types

import click

import runlog
from runlog.cli import cli


def test_all_is_sorted_and_complete() -> None:
    assert len(set(runlog.__all__)) == len(runlog.__all__)  # ruff (RUF022) keeps it sorted
    public = {n for n, v in vars(runlog).items()
              if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    assert public - {"annotations"} <= set(runlog.__all__)
    for name in runlog.__all__:
        assert hasattr(runlog, name), name


def test_every_command_has_help() -> None:
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None
        assert command.help, f"runlog {name} has no help text"
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"runlog {name} {param.opts[0]} has no help"
