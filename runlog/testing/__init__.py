"""Testing toolkit: hypothesis strategies, invariant helpers and a stateful store machine.

``runlog.testing`` is for people who test pipelines, reducers, views, filters or their
own storage backends against runlog. It needs hypothesis (the ``testing`` extra)::

    pip install 'runlog-engine[testing]'

Modules:

* :mod:`runlog.testing.strategies`: recording programs (nested runs of every run type,
  concurrent runs, streamed chunks, tokens, custom events, errors, unfinished runs) and
  :func:`~runlog.testing.strategies.play`, which records one into any store;
* :mod:`runlog.testing.invariants`: assertions that hold for every log (fold of a stream
  equals the state built live, replay is byte-exact, export/import round-trips, filters
  commute with folding);
* :mod:`runlog.testing.machine`: a ``RuleBasedStateMachine`` driving a store and the
  in-memory oracle side by side, parametrised by a store factory.

The pytest fixtures live in :mod:`runlog.pytest_plugin` (loaded automatically).
"""

from __future__ import annotations

try:
    import hypothesis  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(
        "runlog.testing needs hypothesis: pip install 'runlog-engine[testing]'") from e

from runlog.testing.invariants import (
    assert_export_roundtrip,
    assert_filters_commute,
    assert_fold_matches_live,
    assert_recorded,
    assert_replay_exact,
)
from runlog.testing.machine import StoreMachine, store_machine
from runlog.testing.strategies import (
    Program,
    Recording,
    RunSpec,
    event_streams,
    filters,
    play,
    programs,
)

__all__ = [
    "Program",
    "Recording",
    "RunSpec",
    "StoreMachine",
    "assert_export_roundtrip",
    "assert_filters_commute",
    "assert_fold_matches_live",
    "assert_recorded",
    "assert_replay_exact",
    "event_streams",
    "filters",
    "play",
    "programs",
    "store_machine",
]
