"""The ``asyncrec`` command, run as a subprocess (``python -m asyncrec`` and the console
script): recordings from the fake devices and from files, clean stops on SIGINT/SIGTERM,
bad arguments (exit 2, one line), missing devices (exit 1, one line), ``devices``.

Every subprocess has a timeout; every file is checked by Debian's ffprobe/ffmpeg. The
environment never has ``ASYNCREC_FAKE_DEVICES`` unless the test is about it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from media_check import _run, _tool, ffmpeg_decode_errors, ffprobe_duration, ffprobe_streams
from source_check import make_input_file

#: The console script installed next to this interpreter.
SCRIPT = Path(sys.executable).parent / "asyncrec"
#: Generous: starting Python and importing PyAV and aiortc takes about 0.7 s here.
RUN_TIMEOUT = 30.0
#: Media duration a --duration recording may differ from.
DURATION_TOLERANCE = 0.3


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
    assert "video/webm;codecs=vp9,opus" in result.stdout


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
}
MISSING_DEVICES = {
    "camera": ["record", "{tmp}/out.webm", "--source", "camera:/dev/video99"],
    "missing-file": ["record", "{tmp}/out.webm", "--source", "file:{tmp}/missing.webm"],
    "not-media": ["record", "{tmp}/out.webm", "--source", "file:{tmp}/noise.webm"],
    "default-devices": ["record", "{tmp}/out.webm", "--duration", "1"],
}
QUICK = {**BAD_ARGUMENTS, **MISSING_DEVICES, "devices": ["devices"], "devices-fake": ["devices", "--fake"]}


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
        args = [a.replace("{tmp}", str(directory)) for a in QUICK[name]]
        return Case(directory, run(*args, module=name != "devices-fake"))

    with ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 1)) as pool:
        return dict(zip(QUICK, pool.map(one, QUICK), strict=True))


@pytest.mark.parametrize("name", list(BAD_ARGUMENTS))
def test_bad_arguments_exit_2_with_one_line(quick_runs: dict[str, Case], name: str) -> None:
    case = quick_runs[name]
    assert_one_line_error(case.result, 2)
    assert list(case.directory.iterdir()) == []  # nothing recorded


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
