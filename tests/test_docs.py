"""The documentation site (docs/, built by ``nox -s docs``) keeps up with the code.

The build itself (``mkdocs build --strict``) checks cross-references and anchors; these
checks need no MkDocs: every public name has a reference entry, every relative link of a
page leads to a file, and every command-line option is on the command-line page.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import asyncrec
from asyncrec.cli import build_parser

DOCS = Path(__file__).resolve().parent.parent / "docs"
#: ``::: asyncrec.NAME`` (mkdocstrings' directive), at the start of a line.
DIRECTIVE = re.compile(r"^:::\s+asyncrec\.([A-Za-z_][A-Za-z0-9_]*)\s*$", re.MULTILINE)
#: An inline Markdown link or image: ``[text](target)`` / ``![alt](target "title")``.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def prose(page: Path) -> str:
    """The page without its code blocks and inline code (where brackets are not links)."""
    return INLINE_CODE.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))


def test_the_docs_exist() -> None:
    assert (DOCS / "index.md").is_file()
    assert (DOCS / "reference").is_dir()


def test_every_public_name_has_a_reference_entry() -> None:
    documented = set()
    for page in sorted((DOCS / "reference").rglob("*.md")):
        documented.update(DIRECTIVE.findall(page.read_text(encoding="utf-8")))
    missing = sorted(set(asyncrec.__all__) - documented)
    assert not missing, f"add '::: asyncrec.NAME' to a page under docs/reference/ for: {missing}"


def test_reference_entries_name_public_objects() -> None:
    for page in sorted((DOCS / "reference").rglob("*.md")):
        for name in DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            assert name in asyncrec.__all__ or name in {"whip", "sources"}, f"{page.name}: asyncrec.{name}"


def test_relative_links_lead_to_files() -> None:
    broken = []
    checked = 0
    for page in pages():
        for target in LINK.findall(prose(page)):
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
                continue  # http:, https:, mailto:..., or an anchor on the same page
            path = target.split("#", 1)[0].split("?", 1)[0]
            checked += 1
            if not (page.parent / path).resolve().is_file():
                broken.append(f"{page.relative_to(DOCS)}: {target}")
    assert checked > 0
    assert not broken, broken


def test_every_command_line_option_is_documented() -> None:
    cli_page = (DOCS / "cli.md").read_text(encoding="utf-8")
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, command in commands.choices.items():
        assert f"asyncrec {name}" in cli_page, name
        for action in command._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help" and f"`{option}" not in cli_page:
                    missing.append(f"{name} {option}")
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--") and option != "--help" and f"`asyncrec {option}`" not in cli_page:
                missing.append(option)
    assert not missing, f"document in docs/cli.md: {missing}"
