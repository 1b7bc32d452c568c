"""The durable session store against stock FileSessionManager, in the same run on the same filesystem.

Appends go through a real BidiAgent's `_append_messages`, so both stores run exactly the hooks
Strands runs for a BidiAgent (append + sync_agent); ours fsyncs every file and directory, stock does
not fsync. tmpfs (/dev/shm) measures the CPU cost of the code and carries the goals; the real disk
(the first of /var/tmp, /work, ~ that is not tmpfs) shows what fsync latency adds, without goals.
File writes and reads are counted in-process by wrapping `os.open`, `open` and `io.open`. The kill
rows run tests/crashkit.py on the real disk; the anchor of `messages_lost` is stock's loss in a
shorter control run (it stores assistant transcripts empty and may lose a message a hook saw).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from bench.common import Row
from tests.crashkit import make_manager, run_kills

MESSAGES = 1000
KINDS = ("durable", "stock")


def _fstype(path: Path) -> str:
    best, kind = "", "?"
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mount, fs, *_ = line.split()
        if (str(path) + "/").startswith(mount.rstrip("/") + "/") and len(mount) >= len(best):
            best, kind = mount, fs
    return kind


def _disk_dir() -> Path:
    for cand in (Path("/var/tmp"), Path("/work"), Path.home()):
        if cand.is_dir() and os.access(cand, os.W_OK) and _fstype(cand.resolve()) != "tmpfs":
            return cand
    raise RuntimeError("bench session: no writable directory off tmpfs")


def _message(i: int) -> dict[str, Any]:
    if i % 2 == 0:
        return {"role": "user", "content": [{"text": f"what is on my calendar for day {i}, and is it raining"}]}
    return {
        "role": "assistant",
        "content": [{"text": f"On day {i} you have a dentist appointment at ten. No rain is expected."}],
        "metadata": {"custom": {"bidi": {"kind": "transcript", "status": "complete"}}},
    }


def _agent(kind: str, storage: Path) -> Any:
    from strands.bidi import BidiAgent

    from edgevoice.models.local import LocalModel

    return BidiAgent(model=LocalModel(), session_manager=make_manager(kind, "bench", str(storage)))


def _append(kind: str, storage: Path, n: int, start: int = 0, io_counts: Counter[str] | None = None) -> float:
    """Seconds for `n` appends through a real agent; its construction (the restore) is not counted."""

    async def go() -> float:
        agent = _agent(kind, storage)
        with _count_io(io_counts) if io_counts is not None else contextlib.nullcontext():
            t0 = time.perf_counter()
            for i in range(start, start + n):
                await agent._append_messages(_message(i))
            return time.perf_counter() - t0

    return asyncio.run(go())


@contextlib.contextmanager
def _count_io(counts: Counter[str]) -> Iterator[None]:
    """Counts files opened for writing ("write") and regular files opened for reading ("read")."""
    real_os_open, real_open = os.open, builtins.open

    def os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            counts["write"] += 1
        elif not flags & os.O_DIRECTORY and not os.path.isdir(path):
            counts["read"] += 1
        return real_os_open(path, flags, *args, **kwargs)

    def py_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if not isinstance(file, int):
            counts["write" if set(mode) & set("wax+") else "read"] += 1
        return real_open(file, mode, *args, **kwargs)

    os.open, builtins.open, io.open = os_open, py_open, py_open  # type: ignore[assignment,unused-ignore]
    try:
        yield
    finally:
        os.open, builtins.open, io.open = real_os_open, real_open, real_open  # type: ignore[assignment,unused-ignore]


def _restore_s(kind: str, storage: Path) -> float:
    t0 = time.perf_counter()
    agent = _agent(kind, storage)
    took = time.perf_counter() - t0
    assert len(agent.messages) == MESSAGES, f"{kind} restored {len(agent.messages)} messages"
    return took


def _store_rows(quick: bool, shm: Path, disk: Path) -> Iterator[Row]:
    reps = 1 if quick else 3
    per_ms: dict[tuple[str, str], list[float]] = {}
    for rep in range(reps):
        # tmpfs sessions get MESSAGES each (the restore and I/O rows reuse them); the disk's fsync
        # latency swings with the machine's other I/O, so quick mode keeps its share short there.
        for where, base, n in (("tmpfs", shm, MESSAGES), ("disk", disk, 200 if quick else MESSAGES)):
            for kind in KINDS if rep % 2 == 0 else KINDS[::-1]:
                per_ms.setdefault((where, kind), []).append(1000 * _append(kind, base / f"{kind}{rep}", n) / n)
    for where in ("tmpfs", "disk"):
        ours, stock = (statistics.median(per_ms[where, k]) for k in KINDS)
        goal = "ratio <= 1.5" if where == "tmpfs" else ""
        yield Row(f"session.append_ms_per_message ({where})", ours, "ms", stock, goal)

    # Restore: the tmpfs sessions of exactly MESSAGES messages, each written by its own store.
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    for _ in range(3 if quick else 9):
        for kind in KINDS:
            times[kind].append(_restore_s(kind, shm / f"{kind}0"))
    ours, stock = (1000 * statistics.median(times[k]) for k in KINDS)
    yield Row(f"session.restore_ms ({MESSAGES} messages, tmpfs)", ours, "ms", stock, "ratio <= 1.0")

    counts: dict[str, Counter[str]] = {k: Counter() for k in KINDS}
    for kind in KINDS:  # appended to a session that already holds MESSAGES messages: the steady state
        _append(kind, shm / f"{kind}0", 100, start=MESSAGES, io_counts=counts[kind])
    mine, theirs = counts["durable"], counts["stock"]
    yield Row("session.file_writes_per_message", mine["write"] / 100, "files", theirs["write"] / 100, "value == 1")
    yield Row("session.file_reads_per_message", mine["read"] / 100, "files", theirs["read"] / 100)


def _kill_rows(quick: bool, disk: Path) -> Iterator[Row]:
    kills, control = (80, 15) if quick else (1000, 100)
    ours = run_kills(disk / "kills-durable", kills, manager="durable", seed=1, kills_per_session=50)
    stock = run_kills(disk / "kills-stock", control, manager="stock", seed=1, kills_per_session=50)
    for v in ours.violations[:5]:
        print(f"# session kill violation: {v}", file=sys.stderr)
    yield Row("session.kill.survived", ours.survived, "kills", ours.kills, "ratio >= 1")
    yield Row("session.kill.messages_lost", ours.lost, "messages", stock.lost, "value == 0")
    yield Row("session.kill.kills_inside_a_write", ours.in_write, "kills", ours.kills)


def rows(quick: bool) -> Iterable[Row]:
    shm = Path(tempfile.mkdtemp(prefix="edgevoice-bench-", dir="/dev/shm"))
    disk = Path(tempfile.mkdtemp(prefix="edgevoice-bench-", dir=_disk_dir()))
    try:
        yield from _store_rows(quick, shm, disk)
        yield from _kill_rows(quick, disk)
    finally:
        shutil.rmtree(shm, ignore_errors=True)
        shutil.rmtree(disk, ignore_errors=True)


if __name__ == "__main__":  # `python -m bench.rows_session [--quick]`
    for r in rows(quick="--quick" in sys.argv):
        print(r.as_json())
