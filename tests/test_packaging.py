"""What a user installs: the library imports neither aiohttp nor rich, the WHIP names load
on first use, and the installed metadata has the license, URLs, classifiers, extras and the
floors that constraints-lowest.txt pins (and `nox -s lowest` and CI test)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOWEST = ROOT / "constraints-lowest.txt"
#: The packages whose floors constraints-lowest.txt pins, and the extra that needs each.
FLOORS = {
    "av": None,
    "aiortc": None,
    "numpy": None,
    "aiohttp": "server",
    "prometheus_client": "server",
    "rich": "cli",
    "aiobotocore": "s3",
}


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)


def requirements(extra: str | None) -> dict[str, Requirement]:
    """The installed asyncrec's requirements for ``extra`` (None: the library's own)."""
    found = {}
    for line in metadata.requires("asyncrec") or []:
        req = Requirement(line)
        marker_extra = re.search(r'extra == "([^"]+)"', str(req.marker)) if req.marker else None
        if (marker_extra.group(1) if marker_extra else None) == extra:
            found[req.name.lower()] = req
    return found


def pins() -> dict[str, Version]:
    """The ``name==version`` lines of constraints-lowest.txt."""
    pinned = {}
    for line in LOWEST.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pinned[name.strip().lower()] = Version(version.strip())
    return pinned


def test_import_asyncrec_imports_neither_aiohttp_nor_rich() -> None:
    result = run_python(
        "import sys, asyncrec\n"
        "loaded = sorted(m for m in ('aiohttp', 'rich', 'pygments', 'asyncrec.whip') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
        "import asyncrec.whip\n"
        "assert asyncrec.WhipEndpoint is asyncrec.whip.WhipEndpoint\n"
        "assert asyncrec.WhipSession is asyncrec.whip.WhipSession\n"
        "assert asyncrec.record_sessions is asyncrec.whip.record_sessions\n"
        "assert 'aiohttp' in sys.modules\n"
    )
    assert result.returncode == 0, result.stderr


def test_whip_names_load_on_first_access() -> None:
    result = run_python(
        "import sys, asyncrec\n"
        "endpoint = asyncrec.WhipEndpoint\n"
        "assert endpoint.__module__ == 'asyncrec.whip._endpoint', endpoint.__module__\n"
        "assert 'aiohttp' in sys.modules\n"
        "from asyncrec import record_sessions, WhipSession\n"
        "assert 'WhipEndpoint' in dir(asyncrec)\n"
    )
    assert result.returncode == 0, result.stderr


def test_without_aiohttp_the_library_works_and_whip_says_what_to_install() -> None:
    result = run_python(
        "import sys\n"
        "sys.modules['aiohttp'] = None  # as if it were not installed\n"
        "import asyncrec\n"
        "assert asyncrec.MediaRecorder.isTypeSupported('video/webm')\n"
        "try:\n"
        "    asyncrec.WhipEndpoint\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    raise AssertionError('WhipEndpoint imported without aiohttp')\n"
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'asyncrec[server]'" in result.stdout


def test_unknown_attribute_is_an_attribute_error() -> None:
    import asyncrec

    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        _ = asyncrec.NoSuchName  # type: ignore[attr-defined]


def test_metadata_license_urls_classifiers() -> None:
    meta = metadata.metadata("asyncrec")
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert "LICENSE" in meta.get_all("License-File", [])
    urls = dict(entry.split(", ", 1) for entry in meta.get_all("Project-URL", []))
    assert set(urls) >= {"Homepage", "Documentation", "Source", "Issues"}
    assert all(url.startswith("https://") for url in urls.values())
    classifiers = set(meta.get_all("Classifier", []))
    assert {"Framework :: AsyncIO", "Programming Language :: Python :: 3.11", "Typing :: Typed"} <= classifiers
    assert any(c.startswith("Development Status ::") for c in classifiers)
    assert any(c.startswith("Topic :: Multimedia") for c in classifiers)
    # PEP 639: the license expression replaces License classifiers (setuptools refuses both).
    assert not any(c.startswith("License ::") for c in classifiers)


def test_license_file_is_bsd_3_clause() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c) 2026 The asyncrec authors" in text


def test_library_needs_only_av_aiortc_numpy_and_the_extras_add_the_rest() -> None:
    assert set(requirements(None)) == {"av", "aiortc", "numpy"}
    extras = set(metadata.metadata("asyncrec").get_all("Provides-Extra", []))
    assert extras >= {"server", "s3", "cli", "test", "docs", "dev"}
    assert set(requirements("server")) == {"aiohttp", "prometheus_client"}
    assert set(requirements("s3")) == {"aiobotocore"}
    # The command line is all of the `asyncrec` command: `serve`, s3:// and `recover` included.
    cli = requirements("cli")
    assert "rich" in cli
    assert cli["asyncrec"].extras == {"server", "s3"}
    assert requirements("test")["asyncrec"].extras >= {"server", "cli"}


def test_floors_are_the_pinned_lowest_versions() -> None:
    """pyproject.toml's floors and constraints-lowest.txt's pins say the same."""
    pinned = pins()
    assert set(pinned) == set(FLOORS)
    for name, extra in FLOORS.items():
        req = requirements(extra)[name]
        floors = [Version(spec.version) for spec in req.specifier if spec.operator == ">="]
        assert floors == [pinned[name]], f"{name}: pyproject.toml says {req.specifier}, {LOWEST.name} {pinned[name]}"


@pytest.mark.skipif(not os.environ.get("ASYNCREC_LOWEST"), reason="only in the lowest-versions run (nox -s lowest)")
def test_the_lowest_versions_are_what_is_installed() -> None:
    """In `nox -s lowest` and CI's .venv-lowest (ASYNCREC_LOWEST=1): pip bumped nothing."""
    installed = {name: Version(metadata.version(name)) for name in pins()}
    assert installed == pins()
