"""A griffe extension for the documentation build (mkdocs.yml loads it; it is not a page).

asyncrec's docstrings follow Sphinx's conventions, which mkdocstrings does not read as
they are. This extension, run once the ``asyncrec`` package is loaded, makes them render:

* **Sphinx roles** (``:class:`MediaStream```, ``:meth:`stop```,
  ``:class:`~asyncrec.AsyncrecError```) become cross-references when they name something
  the API reference documents (a name in ``asyncrec.__all__``, or a member of one), and
  inline code otherwise (private modules and classes have no page).
* **``#:`` comments** above an attribute (``#: Bytes written so far.``) become its
  docstring, as Sphinx's autodoc reads them.
* **Descriptors documented at run time** (the recorder's ``on<event>`` handler
  attributes) get the docstring they carry when imported.
* A reST ``::`` that introduces a literal block becomes ``:``, as Sphinx renders it.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Iterator
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|meth|func|data|attr|mod|exc|obj):`(~?)([^`]+)`")
PACKAGE = "asyncrec"


class SphinxConventions(griffe.Extension):
    """Make the asyncrec package's Sphinx-style documentation render in mkdocstrings."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != PACKAGE:
            return
        public = {str(name) for name in (pkg.exports or ())}
        for obj in _walk(pkg):
            if obj.docstring is None and obj.is_attribute:
                text = _comment_docstring(obj) or _runtime_docstring(obj)
                if text:
                    obj.docstring = griffe.Docstring(
                        text,
                        lineno=obj.lineno,
                        parent=obj,
                        parser=loader.docstring_parser,
                        parser_options=loader.docstring_options,
                    )
            if obj.docstring is not None:
                obj.docstring.value = _rewrite(obj.docstring.value, pkg, public, _public_class(obj, public))


def _walk(obj: griffe.Object) -> Iterator[griffe.Object]:
    """Every object defined in ``obj`` (not aliases: each object is visited once)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)  # type: ignore[arg-type]


# -- docstrings griffe does not see ------------------------------------------------------------
def _comment_docstring(attr: griffe.Object) -> str | None:
    """The ``#:`` comment lines right above an attribute's assignment, if any."""
    if attr.lineno is None:
        return None
    try:
        lines = attr.lines_collection[attr.filepath]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    found: list[str] = []
    index = attr.lineno - 2  # the line above, 0-based
    while index >= 0 and lines[index].lstrip().startswith("#:"):
        found.insert(0, lines[index].lstrip()[2:].removeprefix(" "))
        index -= 1
    return "\n".join(found) or None


def _runtime_docstring(attr: griffe.Object) -> str | None:
    """The ``__doc__`` a class attribute's value (a property or descriptor) has when
    imported, when that value was given its own."""
    cls = attr.parent
    if cls is None or not cls.is_class:
        return None
    with contextlib.suppress(Exception):
        value = vars(getattr(importlib.import_module(cls.module.path), cls.name)).get(attr.name)
        if isinstance(value, property):
            return value.__doc__
        own = getattr(value, "__dict__", {}).get("__doc__")
        if isinstance(own, str):
            return own
    return None


# -- Sphinx roles ------------------------------------------------------------------------------
def _public_class(obj: griffe.Object, public: set[str]) -> str | None:
    """The exported name of the class ``obj`` is (or is a member of), if it is exported."""
    for candidate in (obj, obj.parent):
        if candidate is not None and candidate.is_class and candidate.name in public:
            return candidate.name
    return None


def _member_path(pkg: griffe.Module, cls_name: str, member: str, public: set[str]) -> str | None:
    """``asyncrec.Class.member`` where that member is rendered: on the class that defines it."""
    if member.startswith("_"):
        return None
    try:
        found = pkg[cls_name].all_members.get(member)
    except (griffe.AliasResolutionError, griffe.CyclicAliasError, KeyError):
        return None
    if found is None:
        return None
    owner = found.final_target.parent if found.is_alias else found.parent
    if owner is None or owner.name not in public:
        return None
    return f"{PACKAGE}.{owner.name}.{member}"


def _resolve(target: str, pkg: griffe.Module, public: set[str], context: str | None) -> str | None:
    """The identifier of the documented object ``target`` names, or None."""
    parts = target.split(".")
    if parts[0] == PACKAGE:
        parts = parts[1:]
    if not parts or parts[0] not in public:
        if len(parts) == 1 and context is not None:
            return _member_path(pkg, context, parts[0], public)
        return None
    if len(parts) == 1:
        return f"{PACKAGE}.{parts[0]}"
    if len(parts) == 2:
        return _member_path(pkg, parts[0], parts[1], public)
    return None


def _rewrite(text: str, pkg: griffe.Module, public: set[str], context: str | None) -> str:
    def replace(match: re.Match[str]) -> str:
        short, target = match.group(1) == "~", match.group(2).strip()
        shown = target.rsplit(".", 1)[-1] if short else target
        identifier = _resolve(target, pkg, public, context)
        if identifier is None:
            return f"`{shown}`"
        return f"[`{shown}`][{identifier}]"

    text = ROLE.sub(replace, text)
    lines = []
    for line in text.split("\n"):
        stripped = line.rstrip()
        if stripped == "::":
            continue
        if stripped.endswith("::"):
            line = stripped[:-1]
        lines.append(line)
    return "\n".join(lines)
