"""What the offline model can hear: the command grammar and the first names, shipped as package data."""

from __future__ import annotations

import functools
import re
from importlib import resources

_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_RULE_REF = re.compile(r"<[^>]+>")
_WORD = re.compile(r"[a-z][a-z']*")


def _data(name: str) -> str:
    return resources.files("edgevoice").joinpath("data", name).read_text(encoding="utf-8")


@functools.cache
def names() -> frozenset[str]:
    """The first names (lower case) that `my name is <name>` accepts."""
    lines = (line.strip() for line in _data("names.txt").splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))


@functools.cache
def grammar() -> str:
    """The JSGF command grammar with the `<name>` rule filled in."""
    return _data("commands.jsgf").replace("@NAMES@", " | ".join(sorted(names())))


def grammar_words(jsgf: str) -> frozenset[str]:
    """Every word a JSGF grammar can produce (what the pronunciation dictionary must cover)."""
    body = _COMMENT.sub(" ", jsgf)
    body = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith(("#", "grammar ")))
    body = _RULE_REF.sub(" ", body).replace("public", " ")
    return frozenset(_WORD.findall(body))
