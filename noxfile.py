"""The one entry point for people and CI: nox -s tests | lint | typecheck | bench."""

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (needs Debian's ffmpeg for ffprobe: scripts/test.sh installs it)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "examples", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src/."""
    session.install("-e", ".", "mypy")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: ratios against a plain PyAV loop and aiortc's recorder, measured in one run."""
    session.install("-e", ".")
    session.run("python", "benchmarks/throughput.py", *session.posargs)
    session.run("python", "benchmarks/codec_throughput.py", *session.posargs)
    session.run("python", "benchmarks/loop_lag.py", *session.posargs)
