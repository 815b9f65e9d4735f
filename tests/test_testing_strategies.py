"""The strategies of runlog.testing are themselves tested: validity, coverage, shrinking."""

from __future__ import annotations

import collections
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings

import runlog
from runlog import codec
from runlog.diff import fold_trees
from runlog.events import RUN_TYPES
from runlog.testing import strategies
from runlog.testing.invariants import (
    assert_recorded,
    assert_replay_exact,
)
from runlog.testing.strategies import (
    Child,
    Fail,
    Ok,
    Program,
    RunSpec,
    Token,
    Unfinished,
    awkward_values,
    compile_program,
    event_streams,
    play,
    program_features,
    programs,
    same_value,
)
from tests.conftest import BACKENDS, make_store


@pytest.mark.parametrize("kind", BACKENDS)
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(program=programs(max_roots=2))
def test_every_program_is_recorded_exactly(kind: str, program: Program) -> None:
    """Every generated program is accepted by the store, stored as called, and folds."""
    for f in sorted(program_features(program)):
        event(f)
    with tempfile.TemporaryDirectory() as tmp, make_store(kind, Path(tmp)) as store:
        recording = play(program, store)
        assert_recorded(store, recording)
        assert_replay_exact(store, recording)
        events = recording.events(store)
        states = fold_trees(events)  # runlog.fold: tests/test_testing_invariants.py
        assert set(states) == set(recording.root_ids)
        for root, state in states.items():
            starts = [e.run_id for e in events if e.kind == "start" and e.trace_id == root]
            assert state.order == starts


def test_distribution_covers_every_feature() -> None:
    """Over a fixed-seed sample, each run type, errors, unfinished runs, nesting,
    interleaving, every channel and codec-awkward values all appear."""
    seen: collections.Counter[str] = collections.Counter()

    @settings(max_examples=100, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(programs())
    def sample(program: Program) -> None:
        seen.update(program_features(program))

    sample()
    wanted = {f"run_type:{t}" for t in RUN_TYPES} | {
        "nested", "error", "unfinished", "interleaved", "stream", "token", "custom",
        "awkward", "end_inputs"}
    missing = wanted - set(seen)
    assert not missing, f"never generated: {sorted(missing)} (seen {dict(seen)})"


def test_knobs_switch_features_off() -> None:
    """errors/unfinished/interleave=False and max_depth=0 are honoured."""

    @settings(max_examples=60, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(programs(max_depth=0, errors=False, unfinished=False, interleave=False,
                    run_types=["tool"]))
    def check(program: Program) -> None:
        feats = program_features(program)
        assert not feats & {"nested", "error", "unfinished", "interleaved"}
        assert {f for f in feats if f.startswith("run_type:")} == {"run_type:tool"}

    check()


def test_programs_print_as_short_readable_code() -> None:
    """A (shrunk) program prints only what differs from the defaults, as Python code."""
    program = Program((RunSpec("rag", actions=(Token("Hel"), Child(RunSpec("tool", "tool"))),
                               ending=Fail("ValueError", "boom")),))
    text = repr(program)
    assert text == ("Program((RunSpec('rag', actions=(Token('Hel'), Child(RunSpec('tool', "
                    "run_type='tool'))), ending=Fail(message='boom')),))")
    assert eval(text, vars(strategies)) == program


def test_schedules_interleave_traces_and_siblings() -> None:
    """A schedule picks which trace (or sibling) emits next; an empty one is sequential."""
    two = (RunSpec("a"), RunSpec("b"))
    assert [op.path for op in compile_program(Program(two))] == [(0,), (0,), (1,), (1,)]
    assert [op.path for op in compile_program(Program(two, interleave=(1,)))] == [
        (1,), (0,), (0,), (1,)]
    assert "interleaved" in program_features(Program(two, interleave=(1,)))
    parent = RunSpec("p", actions=(Child(RunSpec("x")), Child(RunSpec("y"))), interleave=(0, 1))
    paths = [op.path for op in compile_program(Program((parent,)))]
    assert paths == [(0,), (0, 0), (0, 1), (0, 0), (0, 1), (0,)]
    assert "interleaved" in program_features(Program((parent,)))
    sequential = RunSpec("p", actions=(Child(RunSpec("x")), Child(RunSpec("y"))))
    assert "interleaved" not in program_features(Program((sequential,)))


@given(programs())
def test_compiled_order_respects_the_tree(program: Program) -> None:
    """A run starts before its events and its children; it ends after its children."""
    ops = compile_program(program)
    started: set[tuple[int, ...]] = set()
    ended: set[tuple[int, ...]] = set()
    for op in ops:
        if op.action is None:
            assert op.path[:-1] in started or len(op.path) == 1
            assert op.path not in started
            started.add(op.path)
        else:
            assert op.path in started
            assert op.path not in ended
            if isinstance(op.action, Ok | Fail):
                assert all(p in ended or p[:len(op.path)] != op.path or p == op.path
                           or _unfinished(program, p) for p in started)
                ended.add(op.path)
    assert started == {op.path for op in ops}


def _unfinished(program: Program, path: tuple[int, ...]) -> bool:
    spec = program.roots[path[0]]
    for i in path[1:]:
        spec = spec.children[i]
    return isinstance(spec.ending, Unfinished)


@settings(max_examples=200)
@given(awkward_values())
def test_awkward_values_round_trip_through_the_codec(value: object) -> None:
    assert same_value(codec.decode(codec.encode(value)), value)


@settings(max_examples=20)  # each example opens a store; validity is tested above
@given(event_streams(max_roots=1))
def test_event_streams_are_committed_events(events: list[runlog.Event]) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].kind == "start"
    assert events[0].parent_id is None


def test_play_with_time_base_is_deterministic() -> None:
    program = Program((RunSpec("rag", actions=(), ending=Ok("x")),))
    raws = []
    for _ in range(2):
        with runlog.open(":memory:") as store:
            rec = play(program, store, time_base=1_000, run_id=lambda p: f"run-{p}")
            raws.append([e.raw for e in rec.events(store)])
    assert raws[0] == raws[1]
    assert b'"time":1000' in raws[0][0]


def test_strategy_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="max_roots"):
        programs(max_roots=0)
    with pytest.raises(ValueError, match="run_types"):
        programs(run_types=[])


def test_missing_hypothesis_gives_an_install_hint() -> None:
    code = ("import sys; sys.modules['hypothesis'] = None\n"
            "try:\n    import runlog.testing\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == (
        "runlog.testing needs hypothesis: pip install 'runlog-engine[testing]'")

