"""The one entry point for people and CI: nox -s tests | lint | typecheck | lowest | bench."""

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
    """mypy --strict on src/, and on examples/ (typed user scripts: handlers checked against their events)."""
    # cli.py and asyncrec.whip import rich and aiohttp: mypy needs the extras to check them.
    session.install("-e", ".[server,cli]", "mypy")
    session.run("mypy")
    session.run("mypy", "--strict", "examples")


@nox.session
def lowest(session: nox.Session) -> None:
    """The test suite on the lowest versions pyproject.toml allows (the floors that
    constraints-lowest.txt pins; tests/test_packaging.py checks nothing was bumped)."""
    session.install("-c", "constraints-lowest.txt", "-e", ".[test]")
    session.run("pytest", *session.posargs, env={"ASYNCREC_LOWEST": "1"})


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site (docs/ and the docstrings) into site/; any warning fails the build."""
    # mkdocstrings formats signatures with ruff when it is installed (as it is in CI's venv).
    session.install("-e", ".[docs]", "ruff")
    # NO_MKDOCS_2_WARNING: Material for MkDocs prints a notice about its future at every build.
    session.run("mkdocs", "build", "--strict", *session.posargs, env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: ratios against a plain PyAV loop and aiortc's recorder, measured in one run."""
    # The server extra: session_memory.py runs `asyncrec serve`. `nox -s bench -- --quick`
    # is the smoke test.
    session.install("-e", ".[server]")
    session.run("python", "benchmarks/run_all.py", *session.posargs)
