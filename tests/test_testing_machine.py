"""The stateful store machine of runlog.testing, run against every backend in BACKENDS."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

import runlog
from runlog.testing.machine import StoreMachine, store_machine
from tests.conftest import BACKENDS, make_store


@pytest.mark.parametrize("kind", BACKENDS)
def test_store_matches_the_in_memory_oracle(kind: str, tmp_path: Path) -> None:
    """Append, flush, paged reads from cursors, a follower, reopen, replay and verify give
    the same bytes at the same seqs as the in-memory model."""
    counter = itertools.count()
    dirs: dict[int, Path] = {}

    def fresh() -> runlog.Store:
        d = tmp_path / f"case{next(counter)}"
        d.mkdir()
        store = make_store(kind, d)
        dirs[id(store)] = d
        return store

    def reopen(old: runlog.Store) -> runlog.Store:
        d = dirs.pop(id(old))
        store = make_store(kind, d)
        dirs[id(store)] = d
        return store

    machine = store_machine(fresh, None if kind == "memory" else reopen,
                            name=f"{kind.title()}StoreMachine")
    run_state_machine_as_test(machine, settings=settings(
        max_examples=15 if kind != "postgres" else 8, stateful_step_count=25, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))


class _Broken(StoreMachine):
    """A 'backend' that loses its events on reopen: the machine must catch it."""

    @staticmethod
    def make_store() -> runlog.Store:
        return runlog.open(":memory:")

    @staticmethod
    def reopen(old: runlog.Store) -> runlog.Store:
        return runlog.open(":memory:")


def test_the_machine_catches_a_backend_that_loses_events() -> None:
    with pytest.raises(AssertionError):
        run_state_machine_as_test(_Broken, settings=settings(
            max_examples=400, stateful_step_count=10, deadline=None, database=None,
            phases=[Phase.generate], suppress_health_check=list(HealthCheck)))


TestMemoryStoreMachine = store_machine(lambda: runlog.open(":memory:")).TestCase
TestMemoryStoreMachine.settings = settings(max_examples=5, stateful_step_count=10,
                                           deadline=None)
