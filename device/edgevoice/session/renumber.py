"""Renumbering a messages directory to `message_0.json`, `message_1.json`, ... without losing a message.

Strands numbers the next message after the last restored one and names files by that number, so the
files must be numbered without gaps or doubles. What this guarantees:
- nothing is ever renamed over an existing file (`rename_noreplace`): two files with one number
  (`message_1.json`, `message_01.json`) both stay and each gets its own number;
- messages keep their order; equal numbers are ordered canonical name first, then by name;
- a slot still held by a bad file the scan could not move aside keeps its number: nothing goes there;
- every step leaves each message under exactly one name (rename first, then fix the id inside), so a
  crash mid-repair is mended by the next scan; when a rename fails (read-only flash) the rest is left
  as it is and the messages keep the numbers of the names they are under.
No Strands import: it works on (number, name, record) entries the scan built.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from .atomic import fsync_dir, rename_noreplace
from .layout import MESSAGE_PREFIX

log = logging.getLogger(__name__)

def message_name(n: int) -> str:
    return f"{MESSAGE_PREFIX}{n}.json"


@dataclass
class Entry[M]:
    index: int
    """n as read from the file name (`message_007.json` -> 7)."""
    name: str
    record: M


def order_key(index: int, name: str) -> tuple[int, bool, str]:
    """Messages in file-number order; for equal numbers the canonical name first, then by name."""
    return (index, name != message_name(index), name)


def targets[M](entries: list[Entry[M]], reserved: Collection[int]) -> list[int]:
    """The number each entry (in order) should have: 0, 1, 2, ... skipping the reserved ones."""
    out: list[int] = []
    n = 0
    for _ in entries:
        while n in reserved:
            n += 1
        out.append(n)
        n += 1
    return out


@dataclass
class Renumbered[M]:
    records: list[tuple[M, int, bool]]
    """Each record with the number of the file it is in now and whether it was renamed, in order."""
    renamed: int
    complete: bool
    """False when a rename failed and the rest was left as it is."""


def renumber[M](mdir: Path, entries: list[Entry[M]], reserved: Collection[int]) -> Renumbered[M]:
    """Rename `entries` (any order) to their targets, never over an existing file."""
    entries = sorted(entries, key=lambda e: order_key(e.index, e.name))
    want = targets(entries, reserved)
    moves = [(i, e, t) for i, (e, t) in enumerate(zip(entries, want, strict=True)) if e.name != message_name(t)]
    # Downward moves lowest first, then upward moves highest first: each target is then free by the
    # time it is used (the file there has moved on). The no-replace rename makes sure of it anyway.
    down = sorted((m for m in moves if m[2] <= m[1].index), key=lambda m: m[2])
    up = sorted((m for m in moves if m[2] > m[1].index), key=lambda m: -m[2])
    names = [e.name for e in entries]
    numbers = [e.index for e in entries]
    todo = down + up
    renamed = 0
    while todo:
        left = []
        for i, e, t in todo:
            try:
                rename_noreplace(mdir / e.name, mdir / message_name(t))
            except FileExistsError:
                left.append((i, e, t))
                continue
            except OSError as err:
                why = err.strerror
                log.error("session scan: cannot renumber %s (%s); leaving the rest as it is", mdir / e.name, why)
                return Renumbered(_as_they_are(entries, names), renamed, False)
            names[i], numbers[i] = message_name(t), t
            renamed += 1
        if len(left) == len(todo):
            taken = ", ".join(message_name(t) for _, _, t in left)
            log.error("session scan: %s: %s taken by files the scan did not expect; not renumbered", mdir, taken)
            return Renumbered(_as_they_are(entries, names), renamed, False)
        todo = left
    if renamed:
        try:
            fsync_dir(mdir)
        except OSError as err:
            log.error("session scan: cannot fsync %s (%s)", mdir, err.strerror)
    moved = [name != e.name for e, name in zip(entries, names, strict=True)]
    return Renumbered(list(zip([e.record for e in entries], numbers, moved, strict=True)), renamed, True)


def _as_they_are[M](entries: list[Entry[M]], names: list[str]) -> list[tuple[M, int, bool]]:
    """Renumbering stopped: each record keeps the number of the name it is under now (in memory only)."""
    now = [(int(name[len(MESSAGE_PREFIX) : -5]), name, e) for e, name in zip(entries, names, strict=True)]
    now.sort(key=lambda t: order_key(t[0], t[1]))
    return [(e.record, n, name != e.name) for n, name, e in now]
