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
* :func:`assert_fold_matches_live`: :func:`runlog.fold` of each prefix of a stream
  equals the state the ``astream_log`` view built live, event by event;
* :func:`assert_filters_commute`: folding with a filter equals folding the filtered
  stream (the runs a filter keeps do not depend on when you apply it);
* :func:`assert_export_roundtrip`: importing an export yields the same log.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import jsonpatch

from runlog import codec
from runlog.diff import RunTreeState, fold_trees
from runlog.events import Event
from runlog.filters import Filter
from runlog.reducers import fold, log_view
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


def _by_trace(events: Iterable[Event]) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = {}
    for e in events:
        out.setdefault(e.trace_id, []).append(e)
    return out


def _state_bytes(state: Any) -> bytes:
    return codec.encode(state, lossy=True)


def assert_fold_matches_live(events: Iterable[Event], *, every: int = 1) -> None:
    """Folding a stream at once equals the state a live reader built event by event.

    For each trace in ``events``: applying the ``astream_log`` view's patches as they
    come (the view consuming events lazily, as a tail feeds it) must give, after each
    event, the state :func:`runlog.fold` gives for the events up to that one; and the
    :class:`~runlog.diff.RunTreeState` folded live must equal the one folded from the
    prefix. ``every`` checks only every n-th event (folding each prefix is quadratic).
    """
    for trace_id, evs in _by_trace(events).items():
        consumed = 0

        def feed(evs: list[Event] = evs) -> Iterator[Event]:
            nonlocal consumed
            for e in evs:
                consumed += 1
                yield e

        live_states: dict[int, bytes] = {}
        state: Any = None
        for patch in log_view(feed()):  # what an astream_log consumer applies, live
            state = jsonpatch.apply_patch(state, list(patch.ops), in_place=True)
            live_states[consumed] = _state_bytes(state)
        for n, live in live_states.items():
            if n % every and n != len(evs):
                continue
            batch = _state_bytes(fold(evs[:n]))
            assert live == batch, (
                f"trace {trace_id}: after event seq {evs[n - 1].seq} the live astream_log "
                f"state differs from runlog.fold of the same events:\n live  {live!r}\n"
                f" batch {batch!r}")
        tree = RunTreeState(trace_id)
        for i, e in enumerate(evs, 1):
            tree.apply(e)
            if i % every == 0 or i == len(evs):
                batch_tree = fold_trees(evs[:i])[trace_id]
                assert _canonical({"t": tree}) == _canonical({"t": batch_tree}), (
                    f"trace {trace_id}: after event seq {e.seq}, the run-tree state folded "
                    "live differs from folding the prefix")


def assert_filters_commute(events: Iterable[Event], filter: Filter) -> None:
    """Folding the filtered stream equals folding with the filter.

    A filter selects runs by their own name, type, tags and metadata, so whether a run is
    kept cannot depend on the other events. For each trace: ``runlog.fold(events,
    filter=f)`` must equal ``runlog.fold`` of the root's events plus the events ``f``
    keeps (the log view never drops its root), and the run-tree state of the filtered
    events must equal the full run-tree state restricted to the runs ``f`` keeps.
    """
    for trace_id, evs in _by_trace(events).items():
        root = evs[0].run_id
        with_filter = _state_bytes(fold(evs, filter=filter))
        prefiltered = _state_bytes(fold([e for e in evs if e.run_id == root
                                         or filter.matches(e)]))
        assert with_filter == prefiltered, (
            f"trace {trace_id}, {filter!r}: fold(events, filter) differs from fold of the "
            f"filtered events:\n with filter {with_filter!r}\n prefiltered {prefiltered!r}")
        kept = fold_trees([e for e in evs if filter.matches(e)]).get(trace_id)
        restricted = fold_trees(evs)[trace_id].restricted(
            lambda r: filter.matches_run(r.name, r.run_type, r.tags, r.metadata))
        if kept is None:
            assert not restricted.runs, f"{filter!r} keeps runs of {trace_id} only one way"
        else:
            assert _canonical({"t": kept}) == _canonical({"t": restricted}), (
                f"trace {trace_id}, {filter!r}: the run-tree state of the filtered events "
                "differs from the full state restricted to the kept runs")


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
