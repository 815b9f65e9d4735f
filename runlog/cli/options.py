"""Options shared by several commands, declared once (``--db``, filters, ``--json``),
and the helpers that turn what a person typed into what the store takes (ids, times)
or what the store says into a line for a person (counts, messages)."""

from __future__ import annotations

import datetime as dt
import functools
import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from runlog.errors import RunlogError
from runlog.filters import ANY, Filter

if TYPE_CHECKING:
    from runlog.api import Store

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


# ------------------------------------------------------------------ words and lines


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 run``, ``2 runs``, ``0 events``: a count with its noun."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def say(text: str, *, err: bool = True) -> None:
    """Print a message (rich markup) as one line whatever the terminal width.

    Messages are never wrapped: a narrow terminal folds the line itself, and a pipe or
    a log file gets the message whole (a wrapped line breaks grep).
    """
    from runlog.cli.render import console

    console(stderr=err).print(text, soft_wrap=True)


# ------------------------------------------------------------------ ids


def is_full_uuid(value: str) -> bool:
    """True for a complete UUID in its canonical text form (the form runlog's ids take).

    A tail can wait for a run that has not started only when it has the run's full id;
    anything else (a prefix, a typo) could never become the id it waits for.
    """
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def option_error(flag: str, message: str) -> click.ClickException:
    """A wrong value of an option as one line naming the option, exit status 1.

    Used for values only the store can judge (an unknown id, a file that cannot be
    written), as runlog's other errors are; click's own usage errors (exit status 2)
    stay for values that are wrong whatever the store holds.
    """
    return click.ClickException(f"{flag}: {message}")


_MAX_CANDIDATES = 1000


def resolve_trace_id(store: Store, trace_id: str, flag: str = "--trace", *,
                     missing_ok: bool = False) -> str | None:
    """The full id of a trace given as ``--trace``: its id, or a unique prefix/suffix.

    A trace's id is its root run's id, so it resolves as ``--run`` does (8+ characters
    of the id; ambiguous and unknown are errors), among root runs: a prefix that a
    root shares with its own children (runs started in the same millisecond) still
    names that one trace. A run that is not a root is refused with the trace it
    belongs to, since ``--trace`` means the whole trace. With ``missing_ok``, an id no
    run has gives None (a tail waits for such a trace).
    """
    value = trace_id.strip()
    if not value:
        raise option_error(flag, "an empty trace id; give a trace's id (`runlog runs`)")
    if store.runs(trace_id=value, limit=1):
        return value  # an exact trace id (also one whose root is not in the store)
    backend = store.backend
    found: list[str] = []
    if len(value) >= 8:
        found = backend.run_ids_with_prefix(value, limit=_MAX_CANDIDATES)
        if not found:
            found = backend.run_ids_with_suffix(value, limit=_MAX_CANDIDATES)
    infos = [i for i in (backend.get_run(rid) for rid in found) if i is not None]
    roots = sorted({i.trace_id for i in infos if i.parent_id is None})
    if len(roots) == 1 and len(found) < _MAX_CANDIDATES:
        return roots[0]
    if roots or len({i.trace_id for i in infos}) > 1:
        raise option_error(flag, f"trace id {value!r} matches several traces; give more "
                           "of the id")
    if infos:
        info = infos[0]
        raise option_error(
            flag, f"{value!r} is run {info.run_id} inside trace {info.trace_id}, not a "
            f"trace; use --trace {info.trace_id} for the whole trace, or --run {info.run_id}")
    if missing_ok:
        return None
    raise option_error(
        flag, f"no trace {value!r} in {store.location}; a trace id is its root run's id "
        "(or 8+ characters of its start or end): list them with `runlog runs`")


def resolve_run(store: Store, run_id: str, flag: str = "--run") -> str:
    """The full id of a run given as an option (``--run``), errors naming that option."""
    try:
        return store.resolve_run_id(run_id)
    except RunlogError as e:
        raise option_error(flag, str(e)) from None


# ------------------------------------------------------------------ times

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
TIME_FORMATS = ("an age (30s, 15m, 2h, 3d, 1w: that long ago), a date (2026-12-04), or a "
                "date and time (2026-12-04T09:30, 2026-12-04 09:30:00, +01:00 or Z for a "
                "zone; local time otherwise)")


class TimeParam(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 on
    """A point in time typed by a person: an age back from now, or an ISO date/time."""

    name = "TIME"

    def __init__(self, now: Callable[[], dt.datetime] | None = None) -> None:
        self._now = now or (lambda: dt.datetime.now(dt.UTC))

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value
        text = str(value).strip()
        age = _AGE.match(text)
        if age:
            seconds = float(age.group(1)) * _UNITS[age.group(2).lower()]
            return self._now() - dt.timedelta(seconds=seconds)
        try:
            when = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not a time: give {TIME_FORMATS}", param, ctx)
        if when.tzinfo is None:
            when = when.astimezone()  # a time without a zone is local time
        return when
