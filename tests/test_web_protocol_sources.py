"""``/api/runs/{id}/protocol`` asks the installed protocol sources first
(``runlog.protocol_sources`` entry points, see runlog/web/protocol.py): the first that
serves the run gives its events; one raising LookupError is passed over; with none the
recorded v3 events are served as before; a source that fails to load is left out."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import runlog
from runlog.web import create_app, protocol


def _ids(body: str) -> list[tuple[int, str]]:
    out = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "id" in fields:
            out.append((int(fields["id"]), fields["event"]))
    return out


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    with runlog.open(tmp_path / "s.db") as store:
        with store.run("plain", run_type="chain") as run:
            run.stream("x")
        yield TestClient(create_app(store), base_url="http://127.0.0.1"), run.id


def test_the_first_source_that_serves_the_run_answers(
        served: tuple[TestClient, str], monkeypatch: pytest.MonkeyPatch) -> None:
    client, rid = served
    calls: list[dict[str, Any]] = []

    def not_mine(store: Any, run_id: str, **kw: Any) -> Iterator[dict[str, Any]]:
        calls.append({"source": "not_mine", "run_id": run_id, **kw})
        raise LookupError("not a run of mine")
        yield {}  # a generator, as a real source is: the error comes at the first step

    def mine(store: Any, run_id: str, **kw: Any) -> Iterator[dict[str, Any]]:
        calls.append({"source": "mine", "run_id": run_id, **kw})
        for seq in (1, 2, 3):
            if kw["since"] is None or seq > kw["since"]:
                yield {"type": "event", "seq": seq, "method": "values", "params": {}}

    monkeypatch.setattr(protocol, "_sources", [not_mine, mine])
    r = client.get(f"/api/runs/{rid}/protocol?channels=values,lifecycle&namespace=a/b")
    assert r.status_code == 200
    assert _ids(r.text) == [(1, "values"), (2, "values"), (3, "values")]
    assert calls == [
        {"source": "not_mine", "run_id": rid, "since": None,
         "channels": ["lifecycle", "values"], "namespace": ["a", "b"]},
        {"source": "mine", "run_id": rid, "since": None,
         "channels": ["lifecycle", "values"], "namespace": ["a", "b"]}]
    calls.clear()
    r = client.get(f"/api/runs/{rid}/protocol", headers={"Last-Event-ID": "1"})
    assert _ids(r.text) == [(2, "values"), (3, "values")]
    assert calls[-1]["since"] == 1
    assert calls[-1]["channels"] is None


def test_without_a_source_that_serves_it_the_recorded_events_are_served(
        served: tuple[TestClient, str], monkeypatch: pytest.MonkeyPatch) -> None:
    client, rid = served

    def never(store: Any, run_id: str, **kw: Any) -> Iterator[dict[str, Any]]:
        raise LookupError(run_id)
        yield {}

    for sources in ([], [never]):
        monkeypatch.setattr(protocol, "_sources", sources)
        r = client.get(f"/api/runs/{rid}/protocol")
        assert r.status_code == 200
        assert r.text.startswith("retry: 1000")
        assert _ids(r.text) == []  # a plain run recorded no v3 events


class _BrokenEntryPoint:
    name, value = "broken", "nowhere:thing"

    def load(self) -> Any:
        raise ImportError("No module named 'nowhere'")


class _GoodEntryPoint:
    name, value = "good", "tests:source"

    def load(self) -> Any:
        return _source


def _source(store: Any, run_id: str, **kw: Any) -> Iterator[dict[str, Any]]:
    yield {"seq": 7, "method": "custom"}


def test_a_source_that_fails_to_load_is_logged_and_left_out(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(protocol, "_sources", None)
    monkeypatch.setattr(protocol, "entry_points",
                        lambda group: [_GoodEntryPoint(), _BrokenEntryPoint()])
    with caplog.at_level(logging.WARNING, logger="runlog"):
        assert protocol.protocol_sources() == [_source]
    assert "protocol source broken (nowhere:thing) could not be loaded" in caplog.text
    assert protocol.protocol_sources() == [_source]  # loaded once
