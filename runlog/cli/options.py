"""Options shared by several commands, declared once (``--db``, filters, ``--json``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click
import orjson

from runlog.filters import ANY, Filter

F = TypeVar("F", bound=Callable[..., Any])


def db_option(fn: F) -> F:
    """``--db PATH_OR_URL``: the store; default ``$RUNLOG_DB``, else ``./runlog.db``."""
    return click.option(
        "--db",
        "db",
        envvar="RUNLOG_DB",
        default="runlog.db",
        show_default=True,
        show_envvar=True,
        help="Store: a SQLite path, sqlite:///path, or a PostgreSQL URL.",
    )(fn)


def json_option(fn: F) -> F:
    """``--json``: JSON lines for programs instead of the human table/tree."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON lines for programs.")(fn)


def _meta_pairs(values: tuple[str, ...], flag: str) -> dict[str, Any] | None:
    if not values:
        return None
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE or KEY", param_hint=flag)
        if not sep:
            out[key] = ANY  # KEY alone: the key exists
            continue
        try:  # numbers, booleans and JSON values compare as such; anything else is text
            out[key] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            out[key] = raw
    return out


def filter_options(fn: F) -> F:
    """The filter flags (repeatable); the command receives ``filter: Filter | None``."""

    @click.option("--include-name", "include_names", multiple=True, metavar="NAME",
                  help="Keep runs with this name (repeatable; any include matches).")
    @click.option("--include-type", "include_types", multiple=True, metavar="TYPE",
                  help="Keep runs of this run type (chain, llm, chat_model, tool, ...).")
    @click.option("--include-tag", "include_tags", multiple=True, metavar="TAG",
                  help="Keep runs carrying this tag.")
    @click.option("--exclude-name", "exclude_names", multiple=True, metavar="NAME",
                  help="Drop runs with this name (excludes win over includes).")
    @click.option("--exclude-type", "exclude_types", multiple=True, metavar="TYPE",
                  help="Drop runs of this run type.")
    @click.option("--exclude-tag", "exclude_tags", multiple=True, metavar="TAG",
                  help="Drop runs carrying this tag.")
    @click.option("--meta", "include_meta", multiple=True, metavar="KEY=VALUE",
                  help="Keep runs whose metadata KEY equals VALUE (KEY alone: has KEY).")
    @click.option("--exclude-meta", "exclude_meta", multiple=True, metavar="KEY=VALUE",
                  help="Drop runs whose metadata KEY equals VALUE (KEY alone: has KEY).")
    @functools.wraps(fn)
    def wrapper(*args: Any, include_names: tuple[str, ...], include_types: tuple[str, ...],
                include_tags: tuple[str, ...], exclude_names: tuple[str, ...],
                exclude_types: tuple[str, ...], exclude_tags: tuple[str, ...],
                include_meta: tuple[str, ...], exclude_meta: tuple[str, ...],
                **kwargs: Any) -> Any:
        f = Filter(
            include_names=include_names or None,
            include_types=include_types or None,
            include_tags=include_tags or None,
            exclude_names=exclude_names or None,
            exclude_types=exclude_types or None,
            exclude_tags=exclude_tags or None,
            include_metadata=_meta_pairs(include_meta, "--meta"),
            exclude_metadata=_meta_pairs(exclude_meta, "--exclude-meta"),
        )
        return fn(*args, filter=None if f.is_empty else f, **kwargs)

    return wrapper  # type: ignore[return-value]
