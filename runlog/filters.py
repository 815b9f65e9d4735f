"""One filter object for every reader: events, replay, views, tail and exports.

The predicate is LangChain's (``astream_log``/``astream_events``): includes are OR-ed,
excludes are AND-ed afterwards so an exclude always wins, and every test looks at the
run's *own* name, type and tags (tags a runnable inherited are in its own tag list, so
``include_tags`` selects a subtree exactly as in LangChain). runlog adds metadata
filters, which LangChain lacks: ``include_metadata={"user": "ann"}`` matches runs whose
metadata has that key with that value, ``{"user": ANY}`` runs that have the key at all.
Like ``include_tags``, a metadata include matches when *any* of its pairs matches, and
a metadata exclude drops a run when any of its pairs matches.

An include list that is given but empty counts as set and matches nothing by itself,
as in LangChain. View-specific rules (the log view never drops its root; ``name:2``
keys are counted over included runs) live with the views in :mod:`runlog.reducers`.

:meth:`Filter.matches` is the only definition. The stores translate a filter into SQL
that keeps a *superset* of the events it keeps, and the readers apply ``matches`` to
what SQL returns, so every read path (events, runs, tail, replay, exports) gives the
same answer on every backend. Wherever a stored value's encoded form is not its plain
form (metadata with a ``$rl:`` key is stored as one ``$rl:dict`` tag object; a NUL
that SQLite's JSON functions cut strings at, or that PostgreSQL's JSONB refuses), the
SQL keeps the row and leaves the decision to ``matches``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from runlog.codec import TAG_PREFIX

if TYPE_CHECKING:
    from runlog.events import Event

__all__ = ["ANY", "DICT_TAG", "Filter", "sql_strings"]

DICT_TAG: Final = TAG_PREFIX + "dict"
"""The key of the one tag object metadata is stored as when its keys are not plain
(a key starting with ``$rl:``): SQL cannot see such a run's keys, so every metadata
include keeps it for the exact predicate."""


def sql_strings(values: Iterable[str]) -> list[str]:
    """The values a SQL parameter can carry that a stored name, type or tag can equal.

    Stored names, types and tags are valid Unicode (:func:`runlog.events.encode_run_fields`
    refuses lone surrogates), so a filter value with one matches nothing stored; it is
    left out of the SQL (a driver could not encode it) rather than failing the read.
    """
    out = []
    for v in values:
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            continue
        out.append(v)
    return out


class _AnyValue:
    """Matches any value of a metadata key: the key only has to exist."""

    _instance: _AnyValue | None = None

    def __new__(cls) -> _AnyValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "runlog.ANY"

    def __reduce__(self) -> str:
        return "ANY"


ANY: Final = _AnyValue()


def _tuple(v: Iterable[str] | None) -> tuple[str, ...] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return (v,)
    return tuple(v)


@dataclass(frozen=True, slots=True, init=False)
class Filter:
    """Which runs' events to keep (see the module docstring for the exact rules)."""

    include_names: tuple[str, ...] | None
    include_types: tuple[str, ...] | None
    include_tags: tuple[str, ...] | None
    exclude_names: tuple[str, ...] | None
    exclude_types: tuple[str, ...] | None
    exclude_tags: tuple[str, ...] | None
    include_metadata: Mapping[str, Any] | None
    exclude_metadata: Mapping[str, Any] | None

    def __init__(
        self,
        *,
        include_names: Sequence[str] | None = None,
        include_types: Sequence[str] | None = None,
        include_tags: Sequence[str] | None = None,
        exclude_names: Sequence[str] | None = None,
        exclude_types: Sequence[str] | None = None,
        exclude_tags: Sequence[str] | None = None,
        include_metadata: Mapping[str, Any] | None = None,
        exclude_metadata: Mapping[str, Any] | None = None,
    ) -> None:
        set_ = object.__setattr__
        set_(self, "include_names", _tuple(include_names))
        set_(self, "include_types", _tuple(include_types))
        set_(self, "include_tags", _tuple(include_tags))
        set_(self, "exclude_names", _tuple(exclude_names))
        set_(self, "exclude_types", _tuple(exclude_types))
        set_(self, "exclude_tags", _tuple(exclude_tags))
        set_(self, "include_metadata", dict(include_metadata) if include_metadata is not None
             else None)
        set_(self, "exclude_metadata", dict(exclude_metadata) if exclude_metadata is not None
             else None)

    @property
    def has_includes(self) -> bool:
        return not (
            self.include_names is None
            and self.include_types is None
            and self.include_tags is None
            and self.include_metadata is None
        )

    @property
    def is_empty(self) -> bool:
        """True when the filter keeps everything."""
        return not self.has_includes and (
            self.exclude_names is None
            and self.exclude_types is None
            and self.exclude_tags is None
            and self.exclude_metadata is None
        )

    def matches_run(
        self, name: str, run_type: str, tags: Sequence[str], metadata: Mapping[str, Any]
    ) -> bool:
        """The LangChain predicate, plus metadata, on one run's own attributes."""
        include = not self.has_includes
        if self.include_names is not None:
            include = include or name in self.include_names
        if self.include_types is not None:
            include = include or run_type in self.include_types
        if self.include_tags is not None:
            include = include or any(t in self.include_tags for t in tags)
        if self.include_metadata is not None:
            include = include or _any_pair(self.include_metadata, metadata)
        if not include:
            return False
        if self.exclude_names is not None and name in self.exclude_names:
            return False
        if self.exclude_types is not None and run_type in self.exclude_types:
            return False
        if self.exclude_tags is not None and any(t in self.exclude_tags for t in tags):
            return False
        return not (
            self.exclude_metadata is not None and _any_pair(self.exclude_metadata, metadata)
        )

    def matches(self, event: Event) -> bool:
        """Whether ``event``'s run passes the filter."""
        return self.matches_run(event.name, event.run_type, event.tags, event.metadata)

    def __call__(self, event: Event) -> bool:
        return self.matches(event)


def _any_pair(wanted: Mapping[str, Any], metadata: Mapping[str, Any]) -> bool:
    for key, value in wanted.items():
        if key in metadata and (value is ANY or metadata[key] == value):
            return True
    return False
