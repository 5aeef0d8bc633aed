"""The ``asyncrec`` command, run as a subprocess (``python -m asyncrec`` and the console
script): recordings from the fake devices and from files, clean stops on SIGINT/SIGTERM,
bad arguments (exit 2, one line), missing devices and unwritable paths (exit 1, one line
naming them), ``devices``, ``--help``/``--version``, the README's synopsis against the
parser, and the status line on a pseudo-terminal.

Every subprocess has a timeout; every file is checked by Debian's ffprobe/ffmpeg. The
environment never has ``ASYNCREC_FAKE_DEVICES`` unless the test is about it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from asyncrec.cli import _extension_mismatch, build_parser
from media_check import _run, _tool, ffmpeg_decode_errors, ffprobe_duration, ffprobe_streams, mime_pattern
from source_check import make_input_file

#: The console script installed next to this interpreter.
SCRIPT = Path(sys.executable).parent / "asyncrec"
#: Generous: starting Python and importing PyAV and aiortc takes about 0.7 s here.
RUN_TIMEOUT = 30.0
#: Media duration a --duration recording may differ from.
DURATION_TOLERANCE = 0.3
README = Path(__file__).resolve().parent.parent / "README.md"


def command(*args: str, module: bool = True) -> list[str]:
    return [sys.executable, "-m", "asyncrec", *args] if module else [str(SCRIPT), *args]


def environment(*, fake: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ASYNCREC_FAKE_DEVICES"}
    if fake:
        env["ASYNCREC_FAKE_DEVICES"] = "1"
    return env


def run(
    *args: str, module: bool = True, fake: bool = False, timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command(*args, module=module),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment(fake=fake),
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"asyncrec {' '.join(args)} did not finish within {timeout} s: {exc.stderr!r}", pytrace=False)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int) -> None:
    assert result.returncode == status, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("asyncrec: error:"), lines[0]


def streams_of(path: Path) -> dict[str, dict[str, object]]:
    assert path.exists(), f"{path} was not written"
    assert path.stat().st_size > 0, f"{path} is empty"
    assert ffmpeg_decode_errors(path) == ""
    return {str(s["codec_type"]): s for s in ffprobe_streams(path)}


def stream_bitrate(path: Path, selector: str, seconds: float) -> float:
    """Bits per second of the packets of one stream (``v:0``, ``a:0``), by ffprobe."""
    result = _run(
        [
            _tool("ffprobe"),
            "-v",
            "error",
            "-select_streams",
            selector,
            "-show_entries",
            "packet=size",
            "-of",
            "json",
            str(path),
        ]
    )
    assert result.returncode == 0, result.stderr
    return sum(int(p["size"]) for p in json.loads(result.stdout)["packets"]) * 8 / seconds


@pytest.fixture(scope="module")
def media_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_input_file(tmp_path_factory.mktemp("cli") / "input.webm", duration=1.0)


# -- recordings from the fake devices ----------------------------------------------------------


def test_record_webm_from_the_fake_devices(tmp_path: Path) -> None:
    out = tmp_path / "fake.webm"
    result = run("record", str(out), "--source", "fake", "--duration", "2")
    assert_ok(result)
    streams = streams_of(out)
    assert streams["video"]["codec_name"] == "vp8"
    assert streams["audio"]["codec_name"] == "opus"
    assert ffprobe_duration(out) == pytest.approx(2.0, abs=DURATION_TOLERANCE)
    assert "video/webm;codecs=vp8,opus" in result.stdout


@pytest.mark.parametrize(
    ("name", "codecs"),
    [
        pytest.param("out.mp4", {"video": "h264", "audio": "aac"}, id="mp4"),
        pytest.param("out.ogg", {"audio": "opus"}, id="ogg"),
    ],
)
def test_the_extension_chooses_the_container(tmp_path: Path, name: str, codecs: dict[str, str]) -> None:
    out = tmp_path / name
    assert_ok(run("record", str(out), "--source", "fake", "--duration", "1", module=False))
    streams = streams_of(out)
    assert {kind: s["codec_name"] for kind, s in streams.items()} == codecs
    assert ffprobe_duration(out) == pytest.approx(1.0, abs=DURATION_TOLERANCE)


def test_mime_type_is_honoured(tmp_path: Path) -> None:
    out = tmp_path / "out.webm"
    result = run("record", str(out), "--source", "fake", "--duration", "1", "--mime", "video/webm;codecs=vp9,opus")
    assert_ok(result)
    streams = streams_of(out)
    assert streams["video"]["codec_name"] == "vp9"
    assert streams["audio"]["codec_name"] == "opus"
    assert re.search(mime_pattern("video/webm;codecs=vp9,opus"), result.stdout), result.stdout


def test_bitrates_and_timeslice_are_applied(tmp_path: Path) -> None:
    out = tmp_path / "low.webm"
    result = run(
        "record",
        str(out),
        "--source",
        "fake",
        "--duration",
        "1.5",
        "--timeslice",
        "200",
        "--video-bitrate",
        "300000",
        "--audio-bitrate",
        "32000",
    )
    assert_ok(result)
    streams_of(out)
    seconds = ffprobe_duration(out)
    assert seconds == pytest.approx(1.5, abs=DURATION_TOLERANCE)
    # The fake camera's 640x480 pattern takes about 2.5 Mb/s at the default bitrate.
    assert stream_bitrate(out, "v:0", seconds) < 2 * 300_000
    assert stream_bitrate(out, "a:0", seconds) < 2 * 32_000


def test_fake_devices_by_default_with_the_environment_variable(tmp_path: Path) -> None:
    out = tmp_path / "env.webm"
    assert_ok(run("record", str(out), "--duration", "1", fake=True))
    assert set(streams_of(out)) == {"video", "audio"}


@pytest.mark.parametrize(
    ("name", "sources", "codecs"),
    [
        pytest.param(
            "ids.webm",
            ["camera:fake-camera", "mic:fake-microphone"],
            {"video": "vp8", "audio": "opus"},
            id="camera-and-mic",
        ),
        pytest.param("mic.ogg", ["mic:fake-microphone"], {"audio": "opus"}, id="mic"),
    ],
)
def test_the_ids_devices_fake_lists_record_the_fake_devices(
    tmp_path: Path, name: str, sources: list[str], codecs: dict[str, str]
) -> None:
    """``asyncrec devices --fake`` prints fake-camera and fake-microphone; ``--source
    camera:fake-camera`` takes them without ASYNCREC_FAKE_DEVICES."""
    out = tmp_path / name
    args = [arg for source in sources for arg in ("--source", source)]
    assert_ok(run("record", str(out), *args, "--duration", "1"))
    assert {kind: s["codec_name"] for kind, s in streams_of(out).items()} == codecs
    assert ffprobe_duration(out) == pytest.approx(1.0, abs=DURATION_TOLERANCE)


def test_force_records_what_mime_says_whatever_the_extension(tmp_path: Path) -> None:
    out = tmp_path / "forced.webm"
    result = run("record", str(out), "--source", "fake", "--duration", "1", "--mime", "audio/ogg", "--force")
    assert_ok(result)
    assert [s["codec_name"] for s in streams_of(out).values()] == ["opus"]
    probe = _run([_tool("ffprobe"), "-v", "error", "-show_entries", "format=format_name", "-of", "json", str(out)])
    assert json.loads(probe.stdout)["format"]["format_name"] == "ogg"
    assert "audio/ogg" in result.stdout


@pytest.mark.parametrize(
    ("out", "mime", "fits"),
    [
        ("a.webm", "video/webm", True),
        ("a.webm", "audio/webm", True),
        ("a.weba", "audio/webm", True),
        ("a.mkv", "video/x-matroska;codecs=vp9,opus", True),
        ("a.ogg", "audio/ogg", True),
        ("a.opus", "audio/ogg;codecs=opus", True),
        ("a.mp4", "video/mp4", True),
        ("a.mp4", "audio/mp4", True),
        ("a.m4a", "audio/mp4", True),
        ("a.m4a", "video/mp4", True),
        ("A.WEBM", "video/webm", True),
        ("a.unknown", "audio/ogg", True),
        ("noextension", "video/mp4", True),
        ("a.webm", "audio/ogg", False),
        ("a.webm", "video/x-matroska", False),
        ("a.mkv", "video/webm", False),
        ("a.ogg", "audio/webm", False),
        ("a.opus", "video/mp4", False),
        ("a.mp4", "video/webm", False),
        ("a.m4a", "audio/ogg", False),
    ],
)
def test_which_extensions_fit_which_mime_types(out: str, mime: str, fits: bool) -> None:
    message = _extension_mismatch(out, mime)
    assert (message is None) == fits, message
    if message is not None:
        assert out in message
        assert repr(mime) in message
        assert "--force" in message


# -- stopped by a signal -------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_recording_cleanly(tmp_path: Path, signum: signal.Signals) -> None:
    out = tmp_path / "signalled.webm"
    started = time.monotonic()
    process = subprocess.Popen(
        command("record", str(out), "--source", "fake", "--timeslice", "250"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=environment(),
    )
    try:
        # The first chunk on disk means the recording (and its signal handlers) are running.
        deadline = started + RUN_TIMEOUT
        while not (out.exists() and out.stat().st_size > 0):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no chunk was written"
            time.sleep(0.05)
        time.sleep(max(0.0, started + 1.5 - time.monotonic(), 0.5))
        signalled = time.monotonic()
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert str(out) in stdout
    assert ffmpeg_decode_errors(out) == ""
    assert set(streams_of(out)) == {"video", "audio"}
    # At least what was recorded before the signal (less the start-up), at most the time it ran.
    assert 0.3 < ffprobe_duration(out) < signalled - started + DURATION_TOLERANCE


# -- files as sources ------------------------------------------------------------------------------


def test_record_a_file_as_fast_as_possible(tmp_path: Path, media_file: Path) -> None:
    out = tmp_path / "from-file.mkv"
    started = time.monotonic()
    result = run("record", str(out), "--source", f"file:{media_file}")
    elapsed = time.monotonic() - started
    assert_ok(result)
    streams = streams_of(out)
    source = {s["codec_type"]: s for s in ffprobe_streams(media_file)}
    assert streams["video"]["nb_read_frames"] == source["video"]["nb_read_frames"]
    assert streams["audio"]["codec_name"] == "opus"
    assert ffprobe_duration(out) == pytest.approx(1.0, abs=0.1)
    # Python's start-up and a 1 s file read at full speed (it would take 1 s in real time).
    assert elapsed < 5.0


def test_record_a_file_in_real_time(tmp_path: Path, media_file: Path) -> None:
    out = tmp_path / "from-file-realtime.mp4"
    started = time.monotonic()
    result = run("record", str(out), "--source", f"file:{media_file}", "--realtime")
    elapsed = time.monotonic() - started
    assert_ok(result)
    assert {k: s["codec_name"] for k, s in streams_of(out).items()} == {"video": "h264", "audio": "aac"}
    assert elapsed > 0.9
    assert ffprobe_duration(out) == pytest.approx(1.0, abs=0.15)


def test_record_the_audio_of_a_long_file_with_video(tmp_path: Path) -> None:
    """Longer than the reader's video queue: the unused video must not stall the audio."""
    source = make_input_file(tmp_path / "long.webm", duration=3.0)
    out = tmp_path / "sound.ogg"
    assert_ok(run("record", str(out), "--source", f"file:{source}", timeout=5))
    assert [s["codec_name"] for s in streams_of(out).values()] == ["opus"]
    assert ffprobe_duration(out) == pytest.approx(3.0, abs=0.1)


# -- errors --------------------------------------------------------------------------------------

#: Command lines that fail at once, by test id: run all together (each is mostly Python's
#: start-up, so running them side by side saves most of the time). ``{tmp}`` is the case's
#: own empty directory.
BAD_ARGUMENTS = {
    "unknown-extension": ["record", "{tmp}/out.avi", "--source", "fake"],
    "negative-duration": ["record", "{tmp}/out.webm", "--duration", "-1"],
    "zero-timeslice": ["record", "{tmp}/out.webm", "--timeslice", "0"],
    "bogus-source": ["record", "{tmp}/out.webm", "--source", "bogus"],
    "unknown-mime": ["record", "{tmp}/out.webm", "--mime", "video/pineapple"],
    "unknown-codec": ["record", "{tmp}/out.webm", "--mime", "video/webm;codecs=pineapple"],
    "no-subcommand": [],
    "extension-contradicts-mime": ["record", "{tmp}/y.webm", "--mime", "audio/ogg", "--source", "fake"],
}
MISSING_DEVICES = {
    "camera": ["record", "{tmp}/out.webm", "--source", "camera:/dev/video99"],
    "missing-file": ["record", "{tmp}/out.webm", "--source", "file:{tmp}/missing.webm"],
    "not-media": ["record", "{tmp}/out.webm", "--source", "file:{tmp}/noise.webm"],
    "default-devices": ["record", "{tmp}/out.webm", "--duration", "1"],
}
#: Paths that cannot be written, even by root: exit 1, one line naming the path.
UNWRITABLE = {
    "out-in-a-missing-directory": ["record", "{tmp}/missing/out.webm", "--source", "fake", "--duration", "1"],
    "out-under-a-regular-file": ["record", "{tmp}/file/out.webm", "--source", "fake", "--duration", "1"],
    "out-on-sysfs": ["record", "/sys/asyncrec-cli-test.webm", "--source", "fake", "--duration", "1"],
    # An address not of this machine: were the directory made, the bind would fail at once
    # (--no-auth: without it, a --host other than loopback is refused before anything else).
    "serve-out-under-a-regular-file": ["serve", "--out", "{tmp}/file/recordings", "--host", "192.0.2.1", "--no-auth"],
}
#: The path each failing command line's error must name, as it was given.
NAMED_PATHS = {
    "missing-file": "{tmp}/missing.webm",
    "not-media": "{tmp}/noise.webm",
    "out-in-a-missing-directory": "{tmp}/missing/out.webm",
    "out-under-a-regular-file": "{tmp}/file/out.webm",
    "out-on-sysfs": "/sys/asyncrec-cli-test.webm",
    "serve-out-under-a-regular-file": "{tmp}/file/recordings",
}
COMMANDS = ["", "record", "devices", "serve"]
HELP = {f"help-{name or 'asyncrec'}": [name, "--help"] if name else ["--help"] for name in COMMANDS}
QUICK = {
    **BAD_ARGUMENTS,
    **MISSING_DEVICES,
    **UNWRITABLE,
    **HELP,
    "version": ["--version"],
    "devices": ["devices"],
    "devices-fake": ["devices", "--fake"],
}


@dataclass
class Case:
    directory: Path
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    base = tmp_path_factory.mktemp("quick")

    def one(name: str) -> Case:
        directory = base / name
        directory.mkdir()
        if name == "not-media":
            (directory / "noise.webm").write_bytes(os.urandom(4096))
        (directory / "file").write_bytes(b"")  # a regular file where a directory should be
        args = [a.replace("{tmp}", str(directory)) for a in QUICK[name]]
        return Case(directory, run(*args, module=name != "devices-fake"))

    with ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 1)) as pool:
        return dict(zip(QUICK, pool.map(one, QUICK), strict=True))


@pytest.mark.parametrize("name", list(BAD_ARGUMENTS))
def test_bad_arguments_exit_2_with_one_line(quick_runs: dict[str, Case], name: str) -> None:
    case = quick_runs[name]
    assert_one_line_error(case.result, 2)
    assert sorted(p.name for p in case.directory.iterdir()) == ["file"]  # nothing recorded


def test_an_extension_that_contradicts_mime_names_both(quick_runs: dict[str, Case]) -> None:
    case = quick_runs["extension-contradicts-mime"]
    line = case.result.stderr.strip()
    assert f"{case.directory}/y.webm" in line
    assert "'audio/ogg'" in line
    assert "--force" in line


@pytest.mark.parametrize("name", list(UNWRITABLE))
def test_an_unwritable_path_exits_1_with_one_line(quick_runs: dict[str, Case], name: str) -> None:
    assert_one_line_error(quick_runs[name].result, 1)


@pytest.mark.parametrize("name", list(NAMED_PATHS))
def test_errors_name_the_path(quick_runs: dict[str, Case], name: str) -> None:
    case = quick_runs[name]
    path = NAMED_PATHS[name].replace("{tmp}", str(case.directory))
    assert f"asyncrec: error: {path}: " in case.result.stderr, case.result.stderr


@pytest.mark.parametrize("name", list(MISSING_DEVICES))
def test_a_missing_device_exits_1_with_one_line(quick_runs: dict[str, Case], name: str) -> None:
    if name == "default-devices" and "videoinput" in quick_runs["devices"].result.stdout:
        pytest.skip("this machine has a camera")
    assert_one_line_error(quick_runs[name].result, 1)


# -- devices -------------------------------------------------------------------------------------


def test_devices_fake_lists_the_two_fake_devices(quick_runs: dict[str, Case]) -> None:
    result = quick_runs["devices-fake"].result
    assert_ok(result)
    lines = result.stdout.strip().splitlines()
    devices = [line for line in lines if not line.startswith(" ")]
    capabilities = [line.strip() for line in lines if line.startswith(" ")]
    assert len(devices) == 2
    assert any("videoinput" in line and "fake-camera" in line for line in devices)
    assert any("audioinput" in line and "fake-microphone" in line for line in devices)
    assert any("7680x4320" in line for line in capabilities)
    assert any("Hz" in line for line in capabilities)


def test_devices_lists_this_machines_devices(quick_runs: dict[str, Case]) -> None:
    result = quick_runs["devices"].result
    assert_ok(result)
    assert "fake-camera" not in result.stdout
    assert result.stdout.strip()  # the devices, or a line saying there are none


# -- help, version and the README's synopsis -------------------------------------------------------


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def parsers() -> dict[str, argparse.ArgumentParser]:
    """Each command's parser by name, the top level as ''."""
    parser = build_parser()
    return {"": parser, **subparsers(parser)}


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The parser's options by their longest spelling, without --help."""
    return {
        max(action.option_strings, key=len): action
        for action in parser._actions
        if action.option_strings and not isinstance(action, argparse._HelpAction)
    }


def help_entries(text: str) -> dict[str, str]:
    """The help of each option in ``--help`` output (wrapped lines joined), by spelling."""
    entries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = re.match(r"  (-\S.*?)(?:\s{2,}(\S.*))?$", line)
        if match:
            current = [match.group(2) or ""]
            for spelling in re.findall(r"(?<![\w-])--?[a-z][\w-]*", match.group(1)):
                entries[spelling] = current
        elif current is not None and line.startswith("   "):
            current.append(line.strip())
        else:
            current = None
    return {spelling: " ".join(" ".join(words).split()) for spelling, words in entries.items()}


@pytest.mark.parametrize("command", COMMANDS, ids=[name or "asyncrec" for name in COMMANDS])
def test_help_gives_every_option_a_default(quick_runs: dict[str, Case], command: str) -> None:
    result = quick_runs[f"help-{command or 'asyncrec'}"].result
    assert_ok(result)
    assert "default: None" not in result.stdout
    entries = help_entries(result.stdout)
    for spelling, action in options(parsers()[command]).items():
        assert entries.get(spelling), f"{spelling} has no help: {result.stdout}"
        if not isinstance(action, argparse._VersionAction):
            assert "(default: " in entries[spelling], f"{spelling} shows no default: {entries[spelling]!r}"


def test_version(quick_runs: dict[str, Case]) -> None:
    result = quick_runs["version"].result
    assert_ok(result)
    assert result.stdout == f"asyncrec {importlib.metadata.version('asyncrec')}\n"


def readme_synopsis() -> dict[str, str]:
    """The synopsis block of the README's "Command line" section: each command's line
    (continuations joined), by command name, ``asyncrec --version`` as ''."""
    section = README.read_text(encoding="utf-8").split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "no ```sh block in the README's Command line section"
    lines = block.group(1).replace("\\\n", " ").splitlines()
    synopsis: dict[str, str] = {}
    for line in lines:
        words = line.split()
        assert words[0] == "asyncrec", line
        command = words[1] if len(words) > 1 and not words[1].startswith("-") else ""
        assert command not in synopsis, f"two lines for {command or 'asyncrec'}"
        synopsis[command] = " ".join(words[2:] if command else words[1:])
    return synopsis


def test_the_readme_synopsis_lists_every_option_as_the_parser_has_it() -> None:
    synopsis = readme_synopsis()
    all_parsers = parsers()
    assert set(synopsis) == set(all_parsers)
    for command, parser in all_parsers.items():
        text = synopsis[command]
        # [--opt], [--opt ARG], [--opt ARG]... or a bare --opt (asyncrec --version).
        groups = re.findall(r"\[(--[\w-]+)(?: ([^\]]+))?\](\.\.\.)?|(?<!\S)(--[\w-]+)(?!\S)", text)
        assert len(groups) == len(re.findall(r"--[\w-]+", text)), f"an option the test cannot read: {text}"
        listed = {bracketed or bare: (argument, repeated) for bracketed, argument, repeated, bare in groups}
        assert len(listed) == len(groups), f"an option listed twice: {text}"
        wanted = options(parser)
        assert sorted(listed) == sorted(wanted), f"asyncrec {command}"
        for spelling, action in wanted.items():
            argument, repeated = listed[spelling]
            if action.nargs == 0:
                assert not argument, f"{spelling} takes no argument"
            else:
                assert argument == action.metavar or "|" in argument, f"{spelling} {argument} vs {action.metavar}"
            assert bool(repeated) == isinstance(action, argparse._AppendAction), f"{spelling}: '...' iff repeatable"
        for action in parser._actions:
            if command and not action.option_strings:  # OUT (the top level's are the commands)
                assert re.search(rf"(?<![\w\[]){action.metavar}(?![\w\]])", text), f"asyncrec {command}"


# -- the status line on a terminal ---------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def media_time(text: str) -> float:
    """The first MM:SS.s in ``text``, in seconds."""
    shown = re.search(r"(\d+):(\d\d\.\d)", text)
    assert shown is not None, text
    return int(shown.group(1)) * 60 + float(shown.group(2))


def run_on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run asyncrec with stderr on a pseudo-terminal 200 columns wide and stdout on a pipe;
    returns the exit status, stdout and all that was written to the terminal."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    env = {k: v for k, v in environment().items() if not k.startswith("TTY_")}
    env.update(TERM="xterm-256color", COLUMNS="200", LINES="50")
    try:
        process = subprocess.Popen(
            command(*args), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env
        )
    finally:
        os.close(slave)
    written = b""
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                if process.poll() is not None:
                    break  # exited, and nothing more on the terminal
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not data:
                break
            written += data
        stdout, _ = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stdout.decode(), written.decode(errors="replace")


def test_the_status_line_shows_media_time_the_file_and_how_to_stop(tmp_path: Path) -> None:
    """A file read at full speed: the status line counts the media recorded (3 s), not the
    wall time it took; it names the output file and its type, and says how to stop."""
    source = make_input_file(tmp_path / "three-seconds.webm", duration=3.0)
    status, stdout, terminal = run_on_a_terminal(["record", "status.mkv", "--source", f"file:{source}"], tmp_path)
    assert status == 0, terminal
    assert "Traceback" not in terminal
    frames = [frame for frame in re.split(r"[\r\n]", ANSI.sub("", terminal)) if "Ctrl-C to stop" in frame]
    assert frames, f"no status line: {terminal!r}"
    last = frames[-1]
    assert "status.mkv" in last
    assert "video/x-matroska" in last
    recorded = ffprobe_duration(tmp_path / "status.mkv")
    assert recorded == pytest.approx(3.0, abs=0.1)
    assert media_time(last) == pytest.approx(recorded, abs=0.15), last
    assert re.search(r"\d+\.\d\d MB", last)
    assert re.search(r"\d+ kb/s", last)
    assert "0 dropped" in last
    # The line is erased at the end; the summary goes to stdout, with the same media time.
    assert terminal.endswith("\x1b[2K")
    assert stdout.startswith("status.mkv: video/x-matroska"), stdout
    assert media_time(stdout) == pytest.approx(recorded, abs=0.15), stdout


def test_no_status_line_when_stderr_is_not_a_terminal(tmp_path: Path, media_file: Path) -> None:
    result = run("record", str(tmp_path / "quiet.ogg"), "--source", f"file:{media_file}")
    assert_ok(result)
    assert "Ctrl-C" not in result.stderr
    assert "\x1b[" not in result.stderr


@pytest.mark.parametrize(("command", "module", "extra"), [("serve", "aiohttp", "server"), ("record", "rich", "cli")])
def test_a_command_whose_extra_is_missing_says_which_to_install(
    command: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from asyncrec import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    argv = [command] if command == "serve" else [command, "x.webm"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"asyncrec: error: asyncrec {command} needs {module}: pip install 'asyncrec[{extra}]'"]
