"""A hypothesis state machine that drives a real store and the in-memory oracle together.

Every rule does the same thing to both stores through the public API (start a root or a
child run, stream a chunk, a token or a custom event, end a run normally or with an
error, flush, read from a cursor in small pages, follow the log without flushing, open
``store.tail(after=cursor)``, reopen the store, replay a trace, compare runs, verify).
Run ids and times are chosen by the machine and passed to both, so the two stores must
hold *the same bytes at the same seqs*; the invariants check that after every step
(what the real store has committed must be a prefix of the model's log), and the
reading rules compare every answer.

Test your own backend with it::

    from runlog.testing.machine import store_machine

    TestMyBackend = store_machine(
        make_store=lambda: runlog.open("mydb://..."),     # a fresh, empty store
        reopen=lambda old: runlog.open(old.location),     # same data, new Store (optional)
    ).TestCase

or, inside a pytest test, ``run_state_machine_as_test(store_machine(...))``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from runlog.api import Store
from runlog.api import open as open_store
from runlog.events import RUN_TYPES, ErrorInfo, Event
from runlog.ids import new_run_id
from runlog.recorder import Run
from runlog.testing.strategies import RUN_NAMES, json_values

__all__ = ["StoreMachine", "store_machine"]

StoreFactory = Callable[[], Store]
Reopen = Callable[[Store], Store]

_values = st.one_of(st.none(), st.text(max_size=8), json_values(max_leaves=3),
                    st.sampled_from([float("nan"), 2**70, b"\x00\xff", ("t", 1), {1: "x"}]))
_names = st.sampled_from(RUN_NAMES)
_types = st.sampled_from(RUN_TYPES)
_picks = st.integers(0, 1000)


def _run_row(info: Any) -> tuple[Any, ...]:
    status = "open" if info.status in ("running", "abandoned") else info.status
    err = (info.error.type, info.error.message) if info.error is not None else None
    return (info.run_id, info.trace_id, info.parent_id, info.name, info.run_type, status,
            info.start_seq, info.end_seq, info.tags, dict(info.metadata).__repr__(), err,
            info.start_time, info.end_time,
            info.event_count if info.end_seq is not None else None)


class StoreMachine(RuleBasedStateMachine):
    """Subclass with ``make_store`` (and optionally ``reopen``), or use :func:`store_machine`.

    ``make_store()`` returns a fresh, empty store; ``reopen(closed_store)`` returns a new
    :class:`~runlog.Store` over the same data (``None``: the backend cannot be reopened,
    like ``:memory:``).
    """

    make_store: ClassVar[StoreFactory]
    reopen: ClassVar[Reopen | None] = None

    def __init__(self) -> None:
        super().__init__()
        factory = type(self).make_store
        self.real: Store = factory()
        self.model: Store = open_store(":memory:")
        self.open_runs: list[tuple[Run, Run]] = []
        self.roots: list[str] = []
        self.clock = itertools.count(1_700_000_000_000_000, 7)
        self.tail_cursor = 0

    # -- helpers ---------------------------------------------------------------------
    def _pick(self, i: int) -> tuple[Run, Run]:
        return self.open_runs[i % len(self.open_runs)]

    def _raw(self, store: Store, **kw: Any) -> list[tuple[int, bytes]]:
        return [(e.seq, e.raw) for e in store.events(**kw)]

    def _flush(self) -> None:
        self.real.flush()
        self.model.flush()

    # -- recording -------------------------------------------------------------------
    @rule(name=_names, run_type=_types, inputs=_values)
    def start_root(self, name: str, run_type: str, inputs: Any) -> None:
        rid, t = new_run_id(), next(self.clock)
        pair = tuple(s.start_run(name, run_type, inputs=inputs, run_id=rid, time=t,
                                 parent=None, tags=["m"]) for s in (self.real, self.model))
        self.open_runs.append((pair[0], pair[1]))
        self.roots.append(rid)

    @precondition(lambda self: self.open_runs)
    @rule(i=_picks, name=_names, run_type=_types, inputs=_values)
    def start_child(self, i: int, name: str, run_type: str, inputs: Any) -> None:
        rid, t = new_run_id(), next(self.clock)
        real, model = self._pick(i)
        self.open_runs.append((
            real.start_child(name, run_type, inputs=inputs, run_id=rid, time=t),
            model.start_child(name, run_type, inputs=inputs, run_id=rid, time=t)))

    @precondition(lambda self: self.open_runs)
    @rule(i=_picks, chunk=_values, channel=st.sampled_from(["output", "token", "custom"]))
    def emit(self, i: int, chunk: Any, channel: str) -> None:
        t = next(self.clock)
        for run in self._pick(i):
            if channel == "output":
                run.stream(chunk, time=t)
            elif channel == "token":
                run.token(str(chunk)[:5], chunk, time=t)
            else:
                run.event("progress", chunk, time=t)

    @precondition(lambda self: self.open_runs)
    @rule(i=_picks, outputs=_values, failed=st.booleans())
    def end(self, i: int, outputs: Any, failed: bool) -> None:
        pair = self._pick(i)
        self.open_runs.remove(pair)
        t = next(self.clock)
        err = ErrorInfo("ValueError", "boom") if failed else None
        for run in pair:
            run.end(outputs, error=err, time=t)

    @rule()
    def flush(self) -> None:
        self._flush()
        assert self._raw(self.real) == self._raw(self.model)

    # -- reading ---------------------------------------------------------------------
    @rule(fraction=st.floats(0, 1), page_size=st.integers(1, 5))
    def read_from_cursor(self, fraction: float, page_size: int) -> None:
        """Paged reads from any cursor return the model's events after it."""
        self._flush()
        cursor = int(self.model.last_seq() * fraction)
        got = self._raw(self.real, after=cursor, page_size=page_size)
        assert got == self._raw(self.model, after=cursor), f"events(after={cursor}) differ"
        assert self.real.last_seq() == self.model.last_seq()

    @rule()
    def follow(self) -> None:
        """A tail: read what is committed past the cursor (no flush), move the cursor."""
        self.model.flush()
        new = self._raw(self.real, after=self.tail_cursor)
        want = self._raw(self.model, after=self.tail_cursor)[: len(new)]
        assert new == want, f"a reader following from seq {self.tail_cursor} saw other events"
        if new:
            self.tail_cursor = new[-1][0]

    @rule(fraction=st.floats(0, 1))
    def tail_from_cursor(self, fraction: float) -> None:
        """``store.tail(after=cursor)`` yields what was committed after it, then goes idle."""
        self._flush()
        cursor = int(self.model.last_seq() * fraction)
        with self.real.tail(after=cursor, idle_timeout=0.02, poll_interval=0.01) as t:
            got = [(e.seq, e.raw) for e in t if isinstance(e, Event)]
            end = t.cursor
        assert got == self._raw(self.model, after=cursor), f"tail(after={cursor}) differs"
        assert end == self.model.last_seq()

    @precondition(lambda self: self.roots)
    @rule(i=_picks)
    def replay(self, i: int) -> None:
        """Replaying a trace gives the bytes that were stored, in both stores."""
        self._flush()
        root = self.roots[i % len(self.roots)]
        got = [(e.seq, e.raw) for e in self.real.replay(root)]
        assert got == [(e.seq, e.raw) for e in self.model.replay(root)]
        assert got == self._raw(self.real, trace_id=root)

    @precondition(lambda self: type(self).reopen is not None)
    @rule()
    def reopen_store(self) -> None:
        """Close and reopen: committed events survive; runs left open become abandoned."""
        reopen = type(self).reopen
        assert reopen is not None
        self.real.close()
        self.real = reopen(self.real)
        self.open_runs.clear()  # their handles belong to the closed store's writer
        self._flush()
        assert self._raw(self.real) == self._raw(self.model)

    @rule()
    def compare_runs(self) -> None:
        self._flush()
        real = [_run_row(r) for r in self.real.runs(newest_first=False)]
        assert real == [_run_row(r) for r in self.model.runs(newest_first=False)]

    @rule()
    def verify(self) -> None:
        self._flush()
        report = self.real.verify()
        assert report.ok, report.first_error
        assert report.events == self.model.last_seq()

    # -- invariants ------------------------------------------------------------------
    @invariant()
    def committed_is_a_prefix_of_the_model(self) -> None:
        self.model.flush()
        got = self._raw(self.real)
        assert got == self._raw(self.model)[: len(got)]

    def teardown(self) -> None:
        try:
            self._flush()
            assert self._raw(self.real) == self._raw(self.model)
        finally:
            self.real.close()
            self.model.close()


def store_machine(make_store: StoreFactory, reopen: Reopen | None = None, *,
                  name: str = "StoreMachine") -> type[StoreMachine]:
    """A :class:`StoreMachine` subclass for one backend (see the module docstring).

    Args:
        make_store: returns a fresh, empty store (called once per test case).
        reopen: given the closed store, returns a new store over the same data; omit for
            backends that cannot be reopened.
        name: the class name (shows in hypothesis' reports).
    """
    return type(name, (StoreMachine,), {
        "make_store": staticmethod(make_store),
        "reopen": staticmethod(reopen) if reopen is not None else None,
    })
