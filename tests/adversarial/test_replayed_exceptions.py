"""A replayed run raises the exception the live run raised (issue 16, item 4).

Recorded errors keep the exception's ``args`` and ``__dict__``; replays revive the same
class with them, running none of its code (the stored type name may be forged), and a
class this process cannot find comes back as a ``ReplayedError`` carrying the recorded
type name and args. Checked through the core: ``store.replay(view="events")`` (a failing
tool's ``on_tool_error``) and the root's stored ``Event.error``, on every backend.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

import runlog
from runlog.reducers import ReplayedError, error_object

INITS: list[str] = []


class KwOnlyError(Exception):
    """A keyword-only constructor, as many libraries' exceptions have."""

    def __init__(self, *, code: int) -> None:
        INITS.append("KwOnlyError.__init__")
        super().__init__(f"failed with code {code}")
        self.code = code


class NewSideEffectError(Exception):
    """A ``__new__`` with a side effect, as a forger would look for."""

    def __new__(cls, *args: Any) -> NewSideEffectError:
        INITS.append("NewSideEffectError.__new__")
        return super().__new__(cls, *args)


class FinalizerError(Exception):
    """Collecting an instance runs ``__del__``: such a class is never revived."""

    def __del__(self) -> None:
        INITS.append("FinalizerError.__del__")


class Finalizer:
    def __del__(self) -> None:
        INITS.append("Finalizer.__del__")


class MixinFinalizerError(ValueError, Finalizer):
    """The ``__del__`` comes after the builtin base in the MRO."""


def record_failure(store: runlog.Store, exc: BaseException) -> str:
    """A root chain whose tool child raises ``exc`` (which the root lets through)."""
    with (pytest.raises(type(exc)), store.run("root", inputs={"q": 1}) as root,
          root.child("t", "tool", inputs={})):
        raise exc
    store.flush()
    return root.id


def replayed(store: runlog.Store, exc: BaseException) -> tuple[BaseException, BaseException]:
    """(the tool's error from the events view, the root's error from its end event)."""
    rid = record_failure(store, exc)
    INITS.clear()
    errors = [ev["data"]["error"] for ev in store.replay(rid, view="events")
              if ev["event"] == "on_tool_error"]
    assert len(errors) == 1
    (end,) = [e for e in store.events(rid) if e.kind == "end"]
    assert end.error is not None
    root_error = error_object(end.error)
    assert INITS == []  # no constructor ran while replaying
    return errors[0], root_error


@pytest.mark.parametrize("exc", [ValueError("a", 2), KeyError("k"), TypeError(),
                                 RuntimeError("x", ("nested", b"\x00"))],
                         ids=["value-two-args", "key", "no-args", "nested"])
def test_builtin_exceptions_keep_their_args(store: runlog.Store, exc: BaseException) -> None:
    for got in replayed(store, exc):
        assert type(got) is type(exc)
        assert got.args == exc.args
        assert str(got) == str(exc)


def test_os_errors_keep_errno_strerror_and_filename(store: runlog.Store) -> None:
    exc = OSError(2, "No such file", "/x")
    for got in replayed(store, exc):
        assert type(got) is FileNotFoundError
        assert isinstance(got, OSError)
        assert (got.errno, got.strerror, got.filename) == (2, "No such file", "/x")
        assert str(got) == str(exc)


def test_a_module_level_class_is_revived_without_running_its_constructor(
        store: runlog.Store) -> None:
    exc = KwOnlyError(code=7)
    exc.add_note("a note")
    for got in replayed(store, exc):
        assert type(got) is KwOnlyError
        assert got.args == ("failed with code 7",)
        assert got.code == 7
        assert got.__notes__ == ["a note"]
        with pytest.raises(KwOnlyError, match="code 7"):
            raise got
    assert INITS == []


def test_a_class_defined_in_a_function_is_a_replayed_error(store: runlog.Store) -> None:
    class LocalError(Exception):
        pass

    exc = LocalError("gone", 3)
    exc.detail = {"k": [1]}  # type: ignore[attr-defined]
    for got in replayed(store, exc):
        assert type(got) is ReplayedError
        assert isinstance(got, ReplayedError)
        assert got.type == f"{__name__}.{LocalError.__qualname__}"
        assert got.type.endswith("<locals>.LocalError")
        assert got.recorded_args == ("gone", 3)
        assert got.recorded_attrs == {"detail": {"k": [1]}}
        assert str(got) == str(exc)


def test_forged_error_types_run_nothing(store: runlog.Store, tmp_path: Path) -> None:
    """A hostile store names a class to be called with its args: nothing is called."""
    victim = tmp_path / "victim"
    forged = [
        ("subprocess.Popen", (["touch", str(victim)],)),
        ("subprocess.CalledProcessError", ("not", "an", "int", "at", "all")),
        (f"{__name__}.NewSideEffectError", ("boom",)),
        (f"{__name__}.KwOnlyError", ("boom",)),
        (f"{__name__}.FinalizerError", ("boom",)),
        (f"{__name__}.MixinFinalizerError", ("boom",)),
        ("FileNotFoundError", ("not an errno", 1, 2, 3, 4, 5, 6)),
        ("UnicodeDecodeError", ("bad",)),
    ]
    assert subprocess.Popen is not None  # imported, so a lookup could find it
    rid_by_type = {}
    for name, args in forged:
        run = store.start_run("forged", "tool")
        run.fail(runlog.ErrorInfo(name, "boom", "", args=args, attrs={"code": 1}))
        rid_by_type[name] = run.id
    store.flush()
    INITS.clear()
    got = {}
    for name, rid in rid_by_type.items():
        (ev,) = [ev for ev in store.replay(rid, view="events") if ev["event"] == "on_tool_error"]
        got[name] = ev["data"]["error"]
    assert INITS == []
    assert not victim.exists()
    assert type(got["subprocess.Popen"]) is ReplayedError
    assert type(got[f"{__name__}.FinalizerError"]) is ReplayedError
    assert type(got[f"{__name__}.MixinFinalizerError"]) is ReplayedError
    assert type(got["UnicodeDecodeError"]) is ReplayedError  # its C constructor refused
    # revived without their code: args and attributes as stored
    cpe = got["subprocess.CalledProcessError"]
    assert type(cpe) is subprocess.CalledProcessError
    assert cpe.args == ("not", "an", "int", "at", "all")
    assert type(got[f"{__name__}.NewSideEffectError"]) is NewSideEffectError
    kw = got[f"{__name__}.KwOnlyError"]
    assert type(kw) is KwOnlyError
    assert (kw.code, kw.args) == (1, ("boom",))
    del got, kw
    assert INITS == []


def test_errors_stored_without_args_read_as_before(store: runlog.Store) -> None:
    """Errors recorded before args were kept (or by hand) rebuild from the message."""
    run = store.start_run("old", "tool")
    run.fail(runlog.ErrorInfo("KeyError", "'k'"))
    store.flush()
    (end,) = [e for e in store.events(run.id) if e.kind == "end"]
    assert end.error == runlog.ErrorInfo("KeyError", "'k'")
    got = error_object(end.error)
    assert type(got) is KeyError
    assert got.args == ("'k'",)
    assert type(error_object(runlog.ErrorInfo("no.such.Error", "m"))) is ReplayedError


def test_attributes_that_cannot_be_kept_leave_the_error_readable(store: runlog.Store) -> None:
    """A cycle in an attribute cannot be stored: the error keeps type and message."""
    exc = ValueError("cyclic")
    loop: list[Any] = []
    loop.append(loop)
    exc.loop = loop  # type: ignore[attr-defined]
    for got in replayed(store, exc):
        assert type(got) is ValueError
        assert str(got) == "cyclic"
