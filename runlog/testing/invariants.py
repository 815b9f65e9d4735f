"""Invariants every run log keeps, as assertions to call from your own tests.

Each helper raises ``AssertionError`` with a message that names the first event or run
where the property breaks, so it can be used directly in a hypothesis test::

    @given(programs())
    def test_my_backend(program):
        store = open_my_store()
        recording = play(program, store)
        assert_recorded(store, recording)
        assert_replay_exact(store, recording)
        assert_fold_matches_live(store.events())

The properties:

* :func:`assert_recorded`: the store committed exactly the events the program made;
* :func:`assert_replay_exact`: replaying a run yields the bytes that were stored;
* :func:`assert_fold_matches_live`: folding a whole stream at once gives the same
  states as folding it event by event while it was being recorded (each prefix);
* :func:`assert_filters_commute`: folding the filtered stream equals filtering the
  folded states (the runs a filter keeps do not depend on when you apply it);
* :func:`assert_export_roundtrip`: importing an export yields the same log.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from runlog import codec
from runlog.diff import RunTreeState, fold_trees
from runlog.events import Event
from runlog.filters import Filter
from runlog.testing.strategies import Custom, Fail, Ok, Recording, Stream, Token, same_value

if TYPE_CHECKING:
    from runlog.api import Store

__all__ = [
    "assert_export_roundtrip",
    "assert_filters_commute",
    "assert_fold_matches_live",
    "assert_recorded",
    "assert_replay_exact",
    "expected_events",
]


def expected_events(recording: Recording) -> list[dict[str, Any]]:
    """What each recorder call of a recording must have stored, in call order.

    One dict per event with ``run_id, parent_id, trace_id, kind, channel, name,
    run_type, tags, metadata, data, error`` (``(type, message)`` or None) and, for end
    events, ``inputs`` when the program gave final inputs.
    """
    ids = recording.run_ids
    tags: dict[tuple[int, ...], tuple[str, ...]] = {}
    meta: dict[tuple[int, ...], dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for op in recording.ops:
        path, spec, a = op.path, op.spec, op.action
        if a is None:
            parent = path[:-1]
            t = list(tags.get(parent, ())) if parent else []
            t += [x for x in spec.tags if x not in t]
            tags[path] = tuple(t)
            m = dict(meta.get(parent, {})) if parent else {}
            m.update(spec.metadata)
            meta[path] = m
        e: dict[str, Any] = {
            "run_id": ids[path], "parent_id": ids[path[:-1]] if len(path) > 1 else None,
            "trace_id": ids[path[:1]], "name": spec.name, "run_type": spec.run_type,
            "tags": tags[path], "metadata": meta[path], "channel": None, "error": None}
        if a is None:
            e.update(kind="start", data=spec.inputs)
        elif isinstance(a, Stream):
            e.update(kind="stream", channel="output", data=a.chunk)
        elif isinstance(a, Token):
            e.update(kind="stream", channel="token", data={"token": a.token, "chunk": a.chunk})
        elif isinstance(a, Custom):
            e.update(kind="stream", channel="custom", data={"name": a.name, "data": a.data})
        elif isinstance(a, Ok):
            e.update(kind="end", data=a.outputs)
            if a.has_inputs:
                e["inputs"] = a.inputs
        elif isinstance(a, Fail):
            e.update(kind="end", data=a.outputs, error=(a.type, a.message))
        out.append(e)
    return out


def _actual(e: Event) -> dict[str, Any]:
    d: dict[str, Any] = {
        "run_id": e.run_id, "parent_id": e.parent_id, "trace_id": e.trace_id,
        "name": e.name, "run_type": e.run_type, "tags": e.tags, "metadata": e.metadata,
        "channel": e.channel, "kind": e.kind, "data": e.data,
        "error": (e.error.type, e.error.message) if e.error is not None else None}
    if e.has_inputs:
        d["inputs"] = e.inputs
    return d


def assert_recorded(store: Store, recording: Recording) -> None:
    """The store holds exactly the events the recording's calls made, in call order.

    Values are compared by their canonical encoding (so NaN equals NaN and a set equals
    the same set); seqs must be gap-free and the store's hash chains must verify.
    """
    want = expected_events(recording)
    got = recording.events(store)
    assert len(got) == len(want), (
        f"the program made {len(want)} recorder calls but the store committed {len(got)} "
        f"events between seq {recording.first_seq} and {recording.last_seq}")
    for i, (e, w) in enumerate(zip(got, want, strict=True)):
        assert e.seq == recording.first_seq + 1 + i, f"seq gap before event {e.seq}"
        a = _actual(e)
        for key in w:
            assert key in a, f"event seq {e.seq}: no {key!r}"
            assert same_value(a[key], w[key]), (
                f"event seq {e.seq} ({w['kind']} of run {w['name']!r} at program position "
                f"{recording.path_of(w['run_id'])}): {key} is {a.get(key)!r}, "
                f"the program recorded {w[key]!r}")
        assert set(a) == set(w), f"event seq {e.seq}: unexpected fields {set(a) ^ set(w)}"
    report = store.verify()
    assert report.ok, f"store.verify() failed: {report.first_error}"


def assert_replay_exact(store: Store, recording: Recording | None = None) -> None:
    """Replaying each root run yields exactly the stored events: same seqs, same bytes.

    With ``recording=None`` every root run in the store is checked.
    """
    roots = (recording.root_ids if recording is not None
             else [r.run_id for r in store.runs(roots_only=True)])
    for root in roots:
        stored = [(e.seq, e.raw) for e in store.events(trace_id=root)]
        replayed = [(e.seq, e.raw) for e in store.replay(root)]
        assert replayed == stored, _first_difference(f"replay of {root}", stored, replayed)


def _first_difference(what: str, want: list[tuple[int, bytes]],
                      got: list[tuple[int, bytes]]) -> str:
    for i, (w, g) in enumerate(zip(want, got, strict=False)):
        if w != g:
            return f"{what}: event {i} differs: stored {w!r}, got {g!r}"
    return f"{what}: {len(want)} events stored, {len(got)} returned"


def _canonical(states: Mapping[str, RunTreeState]) -> dict[str, Any]:
    return {k: codec.loads_plain(codec.encode(v.to_dict())) for k, v in states.items()}


def assert_fold_matches_live(events: Iterable[Event]) -> None:
    """Folding the whole stream equals the state a live reader built event by event.

    A live reader (a tail) folds each event as it is committed and may be asked for the
    state at any moment; this checks, for every prefix of the stream, that folding the
    prefix from scratch equals the live state at that point, and that the final states
    are equal. It uses :func:`runlog.diff.fold_trees` (one state per trace).
    """
    evs = list(events)
    live: dict[str, RunTreeState] = {}
    for i, e in enumerate(evs):
        state = live.get(e.trace_id)
        if state is None:
            state = live[e.trace_id] = RunTreeState(e.trace_id)
        state.apply(e)
        if i % 7 == 6 or i == len(evs) - 1:  # every prefix would be quadratic; sample them
            batch = _canonical(fold_trees(evs[: i + 1]))
            assert batch == _canonical(live), (
                f"after event seq {e.seq}, folding the prefix differs from the live state")


def assert_filters_commute(events: Iterable[Event], filter: Filter) -> None:
    """Folding the filtered stream equals restricting the folded state to kept runs.

    A filter selects runs by their own name, type, tags and metadata, so whether a run is
    kept cannot depend on the other events; filtering before or after folding must agree.
    """
    evs = list(events)
    filtered = fold_trees([e for e in evs if filter.matches(e)])
    folded = fold_trees(evs)
    restricted = {}
    for tid, st in folded.items():
        kept = st.restricted(lambda r: filter.matches_run(r.name, r.run_type, r.tags,
                                                          r.metadata))
        if kept.runs:
            restricted[tid] = kept
    assert _canonical(filtered) == _canonical(restricted), (
        f"filter {filter!r}: folding after filtering differs from filtering the fold")


def assert_export_roundtrip(store: Store) -> None:
    """Exporting the whole log as JSON lines and importing it gives the same log.

    The imported store must hold the same events (seqs, bytes and hash-chain digests)
    and verify.
    """
    from runlog.api import open as open_store
    from runlog.exporters import jsonl

    buf = io.BytesIO()
    jsonl.export_jsonl(store, buf)
    buf.seek(0)
    with open_store(":memory:") as copy:
        jsonl.import_jsonl(copy, buf)
        copy.flush()
        want = [(e.seq, e.raw, e.digest) for e in store.events(digests=True)]
        got = [(e.seq, e.raw, e.digest) for e in copy.events(digests=True)]
        assert got == want, _first_difference(
            "import(export(log))", [(s, r) for s, r, _ in want], [(s, r) for s, r, _ in got])
        report = copy.verify()
        assert report.ok, f"the imported log does not verify: {report.first_error}"
