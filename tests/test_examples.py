"""Every example runs as shown: the scripts in examples/ (as subprocesses, as a user runs
them) and every Python code block of README.md (in a harness that provides the names a
block takes from its context, such as ``pc_tracks`` or ``upload``).

A new example, or a new README block, has to be added here: the tests check that none is
left out.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import contextlib
import importlib.util
import inspect
import os
import re
import signal
import subprocess
import sys
import types
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from asyncrec import FrameTrack, MediaRecorder, MediaStream, SampleTrack, moving_pattern, sine_tone
from asyncrec._formats import CONTAINERS, parse_mime_type
from media_check import ffmpeg_decode_errors, ffprobe_duration, ffprobe_streams
from whip_client import SDP, Publisher, check_recording, finished_recordings, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
README = ROOT / "README.md"
#: A script gets this long to run (it records well under a second of media).
SCRIPT_TIMEOUT = 60.0
#: A README block gets this long, once its sleeps are scaled (see ``ScaledAsyncio``).
BLOCK_TIMEOUT = 30.0

#: What ffprobe calls the default codecs of each container (record_demo picks the defaults).
DEFAULT_CODECS = {
    "video/webm": ("vp8", "opus"),
    "video/x-matroska": ("vp8", "opus"),
    "video/mp4": ("h264", "aac"),
    "audio/webm": (None, "opus"),
    "audio/mp4": (None, "aac"),
    "audio/ogg": (None, "opus"),
}


def test_every_example_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == ["record_demo.py", "typed_handlers.py", "whip_app.py"]


def run_script(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python examples/SCRIPT ARGS`` in ``cwd``, as the script's docstring shows it."""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )


def check_file(path: Path, *, video: str | None, audio: str | None, seconds: float) -> None:
    """``path`` has exactly the ``video`` and ``audio`` streams (ffprobe's codec names), each
    with decoded frames, lasts about ``seconds`` and decodes cleanly (Debian's ffmpeg)."""
    streams = ffprobe_streams(path)
    found = {s["codec_type"]: s for s in streams}
    expected = {kind: codec for kind, codec in (("video", video), ("audio", audio)) if codec is not None}
    assert {kind: s["codec_name"] for kind, s in found.items()} == expected, streams
    assert len(streams) == len(expected), streams
    assert all(s["nb_read_frames"] for s in streams), f"a stream decodes to nothing: {streams}"
    duration = ffprobe_duration(path)
    assert seconds * 0.7 <= duration <= seconds * 1.5 + 0.3, f"{path.name} lasts {duration:.2f} s, expected {seconds}"
    assert ffmpeg_decode_errors(path) == ""


# -- examples/record_demo.py ------------------------------------------------------------------------------


def load_example(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RECORD_DEMO_TYPES: dict[str, str] = load_example("record_demo").TYPES


def test_record_demo_takes_every_extension_the_library_records() -> None:
    extensions = {spec.extension for spec in CONTAINERS.values()}
    assert extensions <= set(RECORD_DEMO_TYPES), f"record_demo.py lacks {extensions - set(RECORD_DEMO_TYPES)}"
    for extension, mime in RECORD_DEMO_TYPES.items():
        parsed = parse_mime_type(mime)
        assert parsed is not None
        container = CONTAINERS[parsed.essence]
        # .opus is Ogg Opus: the same container as .ogg.
        assert container.extension == (".ogg" if extension == ".opus" else extension)
        assert MediaRecorder.isTypeSupported(mime)


@pytest.mark.parametrize("extension", list(RECORD_DEMO_TYPES))
def test_record_demo(tmp_path: Path, extension: str) -> None:
    out = f"demo{extension}"
    result = run_script("record_demo.py", out, "--seconds", "0.5", "--size", "160x120", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    container = RECORD_DEMO_TYPES[extension]
    video, audio = DEFAULT_CODECS[container]
    assert f"recording 0.5 s of {container};codecs=" in result.stdout
    assert "done: " in result.stdout
    check_file(tmp_path / out, video=video, audio=audio, seconds=0.5)


def test_record_demo_refuses_an_unknown_extension(tmp_path: Path) -> None:
    result = run_script("record_demo.py", "demo.avi", "--seconds", "0.5", cwd=tmp_path)
    assert result.returncode == 1
    assert "unknown extension '.avi'" in result.stderr
    assert not (tmp_path / "demo.avi").exists()


# -- examples/typed_handlers.py ---------------------------------------------------------------------------


def test_typed_handlers(tmp_path: Path) -> None:
    result = run_script("typed_handlers.py", "out.webm", "--seconds", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "start: recording video/webm;codecs=vp8,opus to out.webm" in result.stdout
    counted = re.search(r"done: (\d+) chunks, (\d+) bytes, (\d+) written", result.stdout)
    assert counted is not None, result.stdout
    chunks, delivered, written = map(int, counted.groups())
    assert chunks >= 1
    assert delivered == written
    # FileSink finished the file at close: remuxed with Duration and Cues, in clusters of
    # the muxer's default size instead of the stream's one-frame ones. About the same size.
    assert (tmp_path / "out.webm").stat().st_size == pytest.approx(written, rel=0.05)
    check_file(tmp_path / "out.webm", video="vp8", audio="opus", seconds=1.0)


# -- examples/whip_app.py ---------------------------------------------------------------------------------


@contextlib.contextmanager
def whip_app(cwd: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    """``python examples/whip_app.py --port PORT --ice-host 127.0.0.1``; always stopped
    (SIGTERM, then SIGKILL) on the way out."""
    env = {k: v for k, v in os.environ.items() if k != "ASYNCREC_ICE_HOSTS"}
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "whip_app.py"), "--port", str(port), "--ice-host", "127.0.0.1"],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=SCRIPT_TIMEOUT)


async def wait_answering(http: aiohttp.ClientSession, url: str, proc: subprocess.Popen[str]) -> None:
    """Wait until the app answers OPTIONS on ``url`` (it imports aiortc first: seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SCRIPT_TIMEOUT
    while True:
        assert proc.poll() is None, f"whip_app.py exited with {proc.returncode}"
        with contextlib.suppress(aiohttp.ClientConnectionError):
            async with http.options(url) as response:
                assert response.status == 204
                assert response.headers["Accept-Post"] == SDP
                return
        assert loop.time() < deadline, f"whip_app.py did not answer on {url} within {SCRIPT_TIMEOUT} s"
        await asyncio.sleep(0.1)


@pytest.mark.usefixtures("loopback_ice")
async def test_whip_app(tmp_path: Path) -> None:
    """The app answers on /ingest, records a publisher (to recordings/, VP9 + Opus, while its
    second recorder reports the audio), and stops on SIGTERM."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/ingest"
    with whip_app(tmp_path, port) as proc:
        async with aiohttp.ClientSession() as http:
            await wait_answering(http, url, proc)
            async with http.post(url, data="v=0", headers={"Content-Type": "text/plain"}) as response:
                assert response.status == 415
            async with Publisher(size=(160, 120)) as publisher:
                await publisher.publish(http, url)
                await publisher.wait_connected()
                await asyncio.sleep(1.5)
                # DELETE answers once the session's recording is final.
                assert await publisher.delete(http) == 200
        folder = tmp_path / "recordings"
        await wait_until(lambda: folder.is_dir() and bool(finished_recordings(folder)), 15.0, "the recording")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.to_thread(proc.communicate, timeout=SCRIPT_TIMEOUT)
        assert proc.returncode is not None
    assert "Traceback" not in stderr, stderr
    [recording] = finished_recordings(folder)
    assert recording.suffix == ".webm"
    check_recording(recording, video="vp9", audio="opus", size=(160, 120), duration=(0.8, 4.0))
    assert re.search(r"session \S+: \['(audio|video)', '(audio|video)'\]", stdout), stdout
    assert re.search(r"session \S+: \d+ bytes of audio", stdout), stdout


# -- README.md ------------------------------------------------------------------------------------------


@dataclass
class Block:
    """A fenced ```python block of README.md."""

    section: str  # the "## " heading it is under
    line: int  # of its first line of code
    code: str


def readme_blocks() -> list[Block]:
    blocks: list[Block] = []
    section = ""
    lines = README.read_text().splitlines()
    index = 0
    while index < len(lines):
        text = lines[index]
        if text.startswith("## "):
            section = text[3:].strip()
        if text.strip() == "```python":
            end = lines.index("```", index + 1)
            blocks.append(Block(section, index + 2, "\n".join(lines[index + 1 : end]) + "\n"))
            index = end
        index += 1
    return blocks


BLOCKS = readme_blocks()


def test_readme_blocks_are_all_run() -> None:
    """The harness below knows what each block needs; a new block must be added to it."""
    assert Counter(b.section for b in BLOCKS) == {section: len(runners) for section, runners in HARNESS.items()}


class ScaledAsyncio(types.ModuleType):
    """What ``import asyncio`` gives a README block: asyncio, with its sleeps ``speed`` times
    shorter (``await asyncio.sleep(10)`` stands for "record a while"). Only the block's own
    code sees it; asyncrec's clock is untouched."""

    def __init__(self, speed: float) -> None:
        super().__init__("asyncio")
        self.speed = speed

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float, result: Any = None) -> Any:
        return await asyncio.sleep(delay / self.speed, result)


def block_globals(speed: float, **names: Any) -> dict[str, Any]:
    scaled = ScaledAsyncio(speed)

    def import_(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:  # noqa: A002
        if name == "asyncio" and level == 0:
            return scaled
        return builtins.__import__(name, globals, locals, fromlist, level)

    return {"__name__": "readme", "__builtins__": {**vars(builtins), "__import__": import_}, **names}


async def run_block(block: Block, namespace: dict[str, Any]) -> None:
    """Run ``block`` as a module would (top-level ``await`` and ``async for`` allowed, as in
    the asyncio REPL), then call each coroutine function it defines with the names of the
    namespace its parameters ask for (``record(pc_tracks, path)``)."""
    filename = f"README.md:{block.line}"
    code = compile(block.code, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    async with asyncio.timeout(BLOCK_TIMEOUT):
        result = eval(code, namespace)  # the README's own code
        if inspect.iscoroutine(result):
            await result
        for value in list(namespace.values()):
            if inspect.iscoroutinefunction(value) and value.__code__.co_filename == filename:
                params = inspect.signature(value).parameters
                missing = [p for p in params if p not in namespace]
                assert not missing, f"{filename}: {value.__name__}() needs {missing}, which the harness lacks"
                await value(**{p: namespace[p] for p in params})


@dataclass
class Uploads:
    """The ``upload(data, timecode)`` of a README block: chunks kept in memory."""

    chunks: list[bytes] = field(default_factory=list)
    timecodes: list[float] = field(default_factory=list)

    async def __call__(self, data: bytes, timecode: float) -> None:
        self.chunks.append(data)
        self.timecodes.append(timecode)


def live_tracks(duration: float | None = None) -> list[Any]:
    """Tracks like a peer's: real time, a moving pattern and a tone."""
    return [
        FrameTrack(moving_pattern(160, 120), fps=30, duration=duration),
        SampleTrack(sine_tone(440), duration=duration),
    ]


async def use_record_to_file(block: Block, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``record(pc_tracks, path)``: 10 s of sleep, scaled to 1 s, of live tracks to a file."""
    pc_tracks = live_tracks()
    path = tmp_path / "readme.webm"
    try:
        await run_block(block, block_globals(10.0, pc_tracks=pc_tracks, path=path))
    finally:
        for track in pc_tracks:
            track.stop()
    assert "recording failed" not in capsys.readouterr().out
    check_file(path, video="vp9", audio="opus", seconds=1.0)


async def use_chunk_by_chunk(block: Block, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``async for chunk in rec``: every chunk of 1.2 s of live tracks to ``upload``."""
    upload = Uploads()
    rec = MediaRecorder(MediaStream(live_tracks(duration=1.2)))
    async with rec:
        await run_block(block, block_globals(1.0, rec=rec, upload=upload))
    assert len(upload.chunks) >= 2, "timeslice=500 gives a chunk at least every 500 ms"
    assert upload.timecodes == sorted(upload.timecodes)
    path = tmp_path / "uploaded.webm"
    path.write_bytes(b"".join(upload.chunks))
    check_file(path, video="vp8", audio="opus", seconds=1.2)


async def use_whip_app(block: Block, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``app``: an aiohttp application with the WHIP routes."""
    namespace = block_globals(1.0)
    await run_block(block, namespace)
    app = namespace["app"]
    routes = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource is not None}
    assert {("POST", "/whip"), ("DELETE", "/whip/{session_id}"), ("OPTIONS", "/whip")} <= routes


#: Per README section, in order, what runs its blocks and checks what they did.
HARNESS: dict[str, list[Callable[[Block, Path, pytest.CaptureFixture[str]], Any]]] = {
    "Use": [use_record_to_file, use_chunk_by_chunk],
    "WHIP ingest (recording live WebRTC peers)": [use_whip_app],
}


def harness_cases() -> list[Any]:
    cases = []
    seen: dict[str, int] = {}
    for block in BLOCKS:
        index = seen.get(block.section, 0)
        seen[block.section] = index + 1
        runners = HARNESS.get(block.section, [])
        runner = runners[index] if index < len(runners) else None
        cases.append(pytest.param(block, runner, id=f"README.md:{block.line}"))
    return cases


@pytest.mark.parametrize(("block", "runner"), harness_cases())
async def test_readme_block(
    block: Block, runner: Callable[..., Any] | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert runner is not None, f"no harness for the README block at line {block.line} ({block.section})"
    await runner(block, tmp_path, capsys)
