"""RunState, LogEntry, RunLogPatch and RunLog: LangChain's run-log types, field for field.

They mirror ``langchain_core.tracers.log_stream`` (spec section 2.1 and 2.5) so code
written against LangChain's ``astream_log`` output works on runlog's log view without
importing LangChain: ops are JSON Patch dicts, ``RunLogPatch + RunLogPatch`` gives a
``RunLog``, ``RunLog + RunLogPatch`` gives the next ``RunLog``, only an operand whose
type is exactly ``RunLogPatch`` is accepted, ``RunLog`` never equals a bare
``RunLogPatch`` and neither is hashable.

The one deliberate difference is cost: ``+`` here deep-copies the left state once and
applies the right ops in place (:mod:`runlog.reducers.patch`), which is what LangChain
does too; the log view's ``diff=False`` mode does not use ``+`` at all (its items are
lazy snapshots of one journal, or with ``aliased=True`` views sharing one state: see
:class:`OpsPrefix` and ``docs/views.md``).
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Iterator, Sequence
from pprint import pformat
from typing import Any, NotRequired, TypedDict, overload

from runlog.reducers.patch import apply_ops

__all__ = ["LogEntry", "OpsPrefix", "RunLog", "RunLogPatch", "RunState"]


class LogEntry(TypedDict):
    """One included sub-run, stored at ``/logs/<key>`` of the run state."""

    id: str
    name: str
    type: str
    tags: list[str]
    metadata: dict[str, Any]
    start_time: str
    streamed_output_str: list[str]
    streamed_output: list[Any]
    inputs: NotRequired[Any | None]
    final_output: Any | None
    end_time: str | None


class RunState(TypedDict):
    """The document a run log describes: the root run and its included sub-runs."""

    id: str
    streamed_output: list[Any]
    final_output: Any | None
    name: str
    type: str
    logs: dict[str, LogEntry]


class OpsPrefix(Sequence[dict[str, Any]]):
    """The first ``n`` operations of a shared, growing journal, without copying them.

    ``RunLog.ops`` is cumulative: LangChain builds a new list per yielded ``RunLog``,
    which alone is quadratic. The aliased log view (``aliased=True``) hands out prefixes
    of one journal instead;
    a prefix compares equal to a list holding the same operations. The journal is a
    list of ops, or of patches (whose ``ops`` may be built on access) with a parallel
    list of cumulative op counts.
    """

    __slots__ = ("_counts", "_n", "_ops")

    def __init__(self, ops: list[Any], n: int, counts: list[int] | None = None) -> None:
        self._ops = ops
        self._n = n
        self._counts = counts

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return list(self)[i]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("RunLog.ops index out of range")
        if self._counts is None:
            return self._ops[i]  # type: ignore[no-any-return]
        k = bisect.bisect_right(self._counts, i)
        before = self._counts[k - 1] if k else 0
        return self._ops[k].ops[i - before]  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        n = self._n
        if self._counts is None:
            for i in range(n):
                yield self._ops[i]
            return
        done = 0
        for p in self._ops:
            for op in p.ops:
                if done >= n:
                    return
                yield op
                done += 1

    def __eq__(self, other: object) -> bool:
        if isinstance(other, OpsPrefix | list | tuple):
            return len(other) == self._n and all(a == b for a, b in zip(self, other,
                                                                          strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __add__(self, other: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return [*self, *other]

    def __repr__(self) -> str:
        return repr(list(self))


class RunLogPatch:
    """A list of JSON Patch operations to apply, in order, to the run state."""

    ops: list[dict[str, Any]]

    def __init__(self, *ops: dict[str, Any]) -> None:
        self.ops = list(ops)

    def __add__(self, other: object) -> RunLog:
        if type(other) is RunLogPatch:
            ops = [*self.ops, *other.ops]
            state = apply_ops(None, copy.deepcopy(ops))
            return RunLog(*ops, state=state)
        raise TypeError(
            f"unsupported operand type(s) for +: '{type(self).__name__}' and "
            f"'{type(other).__name__}' (only a RunLogPatch can be added to a run log)")

    def __repr__(self) -> str:
        return f"RunLogPatch({pformat(self.ops)[1:-1]})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunLogPatch) and self.ops == other.ops

    __hash__ = None  # type: ignore[assignment]


class RunLog(RunLogPatch):
    """The cumulative log: every operation so far (``ops``) and their result (``state``).

    Instances yielded by the log view with ``diff=False`` own their state, built when
    first read; with ``aliased=True`` they share one state that the view keeps updating
    (see ``docs/views.md``): read or copy such an item before asking for the next one.
    ``RunLog`` objects built with ``+`` own their state.
    """

    state: RunState
    ops_added: list[dict[str, Any]]

    def __init__(self, *ops: dict[str, Any], state: RunState) -> None:
        super().__init__(*ops)
        self.state = state
        self.ops_added = self.ops

    @classmethod
    def _shared(cls, ops: OpsPrefix, added: list[dict[str, Any]], state: Any) -> RunLog:
        log = cls.__new__(cls)
        log.ops = ops  # type: ignore[assignment]
        log.ops_added = added
        log.state = state
        return log

    def __add__(self, other: object) -> RunLog:
        if type(other) is RunLogPatch:
            state = apply_ops(copy.deepcopy(self.state), other.ops)
            log = RunLog(*self.ops, *other.ops, state=state)
            log.ops_added = list(other.ops)
            return log
        raise TypeError(
            f"unsupported operand type(s) for +: '{type(self).__name__}' and "
            f"'{type(other).__name__}' (only a RunLogPatch can be added to a run log)")

    def __repr__(self) -> str:
        return f"RunLog({pformat(self.state)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunLog):
            return False
        if self.state != other.state:
            return False
        return super().__eq__(other)

    __hash__ = None
