"""``state_at``: the RunState of a run as of any seq, without refolding from the start.

A :class:`StateIndex` keeps, per run, a *cursor* (a log reducer and its state at the
highest seq asked so far) and a bounded list of *checkpoints* (deep copies of the
cursor taken every ``every`` events while it advances). A request for a later seq
continues the cursor and reads only the new events; a request for an earlier seq
starts from the nearest checkpoint at or before it. When the list is full every other
checkpoint is dropped and the interval doubles, so memory stays at most
``max_checkpoints`` copies of the state and a backwards query reads at most
``every * 2**k`` events (k halvings). The returned state is a private deep copy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from runlog.events import Event
from runlog.filters import Filter
from runlog.reducers.log import LogReducer, _eager
from runlog.reducers.patch import apply_ops

__all__ = ["StateIndex"]

ReadFn = Callable[[int, int | None], Iterator[Event]]
"""``read(after, until)``: the run's (subtree's) events with ``after < seq <= until``."""


@dataclass(slots=True)
class _Cursor:
    reducer: LogReducer
    state: Any
    seq: int  # every event with seq <= this was fed
    fed: int  # number of events fed

    def advance(self, events: Iterator[Event]) -> None:
        red = self.reducer
        for e in events:
            for p in red.feed(e):
                self.state = apply_ops(self.state, _eager(p))
            self.seq = e.seq
            self.fed += 1


class StateIndex:
    """Answers ``state_at(seq)`` for one run (see the module docstring)."""

    def __init__(self, read: ReadFn, *, filter: Filter | None = None,
                 with_streamed_output_list: bool = True, every: int = 1000,
                 max_checkpoints: int = 16) -> None:
        if every < 1 or max_checkpoints < 2:
            raise ValueError("every must be >= 1 and max_checkpoints >= 2")
        self._read = read
        self._every = every
        self._max = max_checkpoints
        self._filter = filter
        self._with_list = with_streamed_output_list
        self._cursor = self._make()
        self._checkpoints: list[_Cursor] = []
        self.events_read = 0  # how many events the index has read (for tests/metrics)

    def _make(self) -> _Cursor:
        return _Cursor(LogReducer(filter=self._filter, with_streamed_output_list=self._with_list,
                                  lazy_text=True, escape_keys=True), None, 0, 0)

    def _checkpoint(self, cur: _Cursor) -> None:
        if cur.fed == 0 or cur.fed % self._every:
            return
        if self._checkpoints and self._checkpoints[-1].fed >= cur.fed:
            return
        self._checkpoints.append(copy.deepcopy(cur))
        if len(self._checkpoints) >= self._max:
            self._checkpoints = self._checkpoints[1::2]
            self._every *= 2

    def _advance(self, cur: _Cursor, until: int | None, *, checkpoints: bool) -> None:
        for e in self._read(cur.seq, until):
            self.events_read += 1
            cur.advance(iter((e,)))
            if checkpoints:
                self._checkpoint(cur)

    def state_at(self, seq: int | None = None) -> Any:
        """The RunState after every event with ``seq <=`` the given one (None: all)."""
        cur = self._cursor
        if seq is None or seq >= cur.seq:
            self._advance(cur, seq, checkpoints=True)
            return copy.deepcopy(cur.reducer.finish(cur.state))
        base = None
        for cp in self._checkpoints:
            if cp.seq <= seq:
                base = cp
            else:
                break
        tmp = copy.deepcopy(base) if base is not None else self._make()
        self._advance(tmp, seq, checkpoints=False)
        return tmp.reducer.finish(tmp.state)
