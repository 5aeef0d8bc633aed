"""Handlers are typed: mypy --strict accepts handlers of the right event and flags the
others, with ``recorder.on(...)`` (plain or as a decorator) and the ``on*`` attributes.

Each snippet is checked by mypy (``mypy.api``) with the project's configuration. The
correct one must give no error at all; in the wrong one, every line marked ``# error:
CODE`` must get exactly that error, and no other line any. (examples/typed_handlers.py is
a complete typed script, checked by ``mypy --strict examples`` in CI.)
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api", reason="mypy is not installed (the lowest-versions run)")

ROOT = Path(__file__).resolve().parent.parent

HEADER = """\
from __future__ import annotations

from collections.abc import Callable
from typing import assert_type

from asyncrec import BlobEvent, ErrorEvent, Event, FileSink, MediaRecorder, MediaStream, NotSupportedError

recorder = MediaRecorder(MediaStream())
"""

CORRECT = """\
@recorder.on("dataavailable")
async def upload(event: BlobEvent) -> None:
    print(len(event.data), event.timecode)


# The decorated functions keep their own types (not Any, not the bound).
async def call_upload() -> None:
    assert_type(await upload(BlobEvent("dataavailable", b"", 0.0)), None)


@recorder.on("error")
def failed(event: ErrorEvent) -> str:
    return event.error.name


assert_type(failed(ErrorEvent("error", NotSupportedError("x"))), str)


@recorder.on("start")
def started(event: Event) -> None:
    print(event.type)


# A handler of any Event also takes a BlobEvent or an ErrorEvent.
recorder.on("dataavailable", started)
recorder.on("error", started)
recorder.on("stop", started)
assert_type(recorder.on("error", failed)(ErrorEvent("error", NotSupportedError("x"))), str)

# A type known only at run time takes a handler of any Event.
for name in ("start", "stop", "pause", "resume"):
    recorder.on(name, started)
    recorder.off(name, started)

sink = FileSink("out.webm")
recorder.ondataavailable = sink.write
recorder.ondataavailable = lambda event: print(len(event.data))
recorder.ondataavailable = None
recorder.onerror = lambda event: print(event.error.name)
recorder.onerror = failed
recorder.onstart = started
recorder.onstop = lambda event: print(event.type)
recorder.onpause = started
recorder.onresume = started
recorder.onerror = started



def attribute_types(other: MediaRecorder) -> None:
    assert_type(other.ondataavailable, Callable[[BlobEvent], object] | None)
    assert_type(other.onerror, Callable[[ErrorEvent], object] | None)
    for attribute in (other.onstart, other.onstop, other.onpause, other.onresume):
        assert_type(attribute, Callable[[Event], object] | None)
    handler = other.ondataavailable
    if handler is not None:
        handler(BlobEvent("dataavailable", b"", 0.0))
"""

WRONG = """\
def on_error(event: ErrorEvent) -> None: ...
def on_chunk(event: BlobEvent) -> None: ...
def no_argument() -> None: ...

recorder.ondataavailable = on_error  # error: assignment
recorder.onerror = on_chunk  # error: assignment
recorder.onstart = on_chunk  # error: assignment
recorder.onstop = no_argument  # error: assignment
recorder.onstart = "not a handler"  # error: assignment
recorder.onerror = lambda event: print(event.data)  # error: attr-defined
recorder.on("dataavailable", on_error)  # error: type-var
recorder.on("error", on_chunk)  # error: type-var
recorder.on("start", on_chunk)  # error: type-var
name = "stop"
recorder.on(name, on_error)  # error: type-var

@recorder.on("dataavailable")  # error: type-var
def wrong_decorated(event: ErrorEvent) -> None: ...

@recorder.on("pause")  # error: type-var
async def wrong_async(event: BlobEvent) -> None: ...
"""


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> dict[str, list[str]]:
    """Run mypy --strict once over both snippets: its error lines, per snippet file name."""
    folder = tmp_path_factory.mktemp("typing")
    for name, body in (("correct.py", CORRECT), ("wrong.py", WRONG)):
        (folder / name).write_text(HEADER + "\n" + textwrap.dedent(body))
    # A cache kept between runs (pytest's cache folder), so only the snippets are re-checked.
    store = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    cache = store.mkdir("mypy") if store is not None else folder / ".mypy_cache"
    stdout, stderr, _status = api.run(
        [
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(cache),
            "--show-error-codes",
            "--no-pretty",
            "--no-error-summary",
            str(folder / "correct.py"),
            str(folder / "wrong.py"),
        ]
    )
    assert not stderr, stderr
    errors: dict[str, list[str]] = {"correct.py": [], "wrong.py": []}
    for line in stdout.splitlines():
        match = re.match(r".*?([^/\\]+\.py):(\d+): error: (.*)", line)
        if match is None:
            continue  # a note
        errors.setdefault(match[1], []).append(f"{match[2]}: {match[3]}")
    return errors


def test_correct_handlers_type_check(mypy_errors: dict[str, list[str]]) -> None:
    assert mypy_errors == {**mypy_errors, "correct.py": []}, mypy_errors["correct.py"]
    assert set(mypy_errors) == {"correct.py", "wrong.py"}, "mypy reported errors in another file"


def test_wrong_handlers_are_flagged(mypy_errors: dict[str, list[str]]) -> None:
    source = (HEADER + "\n" + WRONG).splitlines()
    expected = {
        str(number): match[1]
        for number, text in enumerate(source, start=1)
        if (match := re.search(r"# error: ([\w-]+)", text)) is not None
    }
    assert len(expected) == 12
    found: dict[str, list[str]] = {}
    for error in mypy_errors["wrong.py"]:
        number, _, message = error.partition(": ")
        found.setdefault(number, []).append(message)
    assert set(found) == set(expected), f"mypy flagged lines {sorted(found, key=int)}: {mypy_errors['wrong.py']}"
    for number, code in expected.items():
        assert [m for m in found[number] if m.endswith(f"[{code}]")], f"line {number}: {found[number]}, not [{code}]"
