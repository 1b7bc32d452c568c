"""Power cuts on a LazyFS-like filesystem (tests/lazyfs.py): what was not fsynced is lost.

A SIGKILL leaves the page cache intact and cannot show a missing fsync; here the conversation runs
in a child process on the lazy filesystem, the test kills it at a random moment and unmounts,
which drops everything not fsynced. Every message whose MessageAddedEvent (and, for transcripts,
MessageUpdatedEvent) a hook observed must come back intact. Stock FileSessionManager, which never
fsyncs, loses them on the same filesystem: the test can fail.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgevoice.session.atomic import write_bytes
from tests.lazyfs import REPO, LazyFS, fuse_unavailable

SID = "kitchen"
AID = "edgevoice"
LINES = ["my name is alice", "what is my name", "what time is it", "tell me a joke", "what can you do"]


@pytest.fixture(scope="module", autouse=True)
def _fuse() -> None:
    reason = fuse_unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def lazy(tmp_path: Path) -> Iterator[LazyFS]:
    (tmp_path / "flash").mkdir()
    (tmp_path / "mnt").mkdir()
    fs = LazyFS(tmp_path / "flash", tmp_path / "mnt")
    yield fs
    fs.close()


def test_the_filesystem_keeps_only_what_was_fsynced(lazy: LazyFS) -> None:
    (lazy.backing / "old.txt").write_text("old")
    lazy.mount()
    m = lazy.mountpoint
    write_bytes(m / "a" / "b" / "durable.txt", b"durable")  # file, rename and new dirs all fsynced
    (m / "plain.txt").write_text("never fsynced")
    with open(m / "file_only.txt", "w") as f:  # data fsynced, directory entry not
        f.write("x")
        f.flush()
        os.fsync(f.fileno())
    (m / "old.txt").write_text("new, not fsynced")
    os.rename(m / "a" / "b" / "durable.txt", m / "a" / "b" / "renamed.txt")  # not fsynced
    assert sorted(os.listdir(m)) == ["a", "file_only.txt", "old.txt", "plain.txt"]
    assert (m / "plain.txt").read_text() == "never fsynced"
    lazy.cut_power()

    flash = lazy.backing
    assert sorted(str(p.relative_to(flash)) for p in flash.rglob("*")) == ["a", "a/b", "a/b/durable.txt", "old.txt"]
    assert (flash / "old.txt").read_text() == "old"
    assert (flash / "a" / "b" / "durable.txt").read_bytes() == b"durable"
    assert (flash / "a" / "b" / "durable.txt").stat().st_mode & 0o777 == 0o600

    lazy.mount()  # the next boot sees the durable state
    assert (lazy.mountpoint / "a" / "b" / "durable.txt").read_bytes() == b"durable"
    fd = os.open(lazy.mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    (lazy.mountpoint / "entry_only.txt").write_text("data never fsynced")
    os.fsync(fd)  # the entry is durable, the bytes are not: it comes back empty, as on ext4
    os.close(fd)
    lazy.cut_power()
    assert (flash / "entry_only.txt").read_bytes() == b""


# -- a conversation in a child process, killed at a random moment ------------------------------------
class Child:
    """`python -m tests.test_session_powercut`: talks on the mount and prints one JSON line per event."""

    def __init__(self, storage: Path, manager: str) -> None:
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115  (read when the child fails)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.test_session_powercut", str(storage), manager],
            cwd=REPO, stdout=subprocess.PIPE, stderr=self.log, text=True,
        )
        assert self.proc.stdout is not None
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.logs: list[str] = []  # its warnings and errors

    def line(self, timeout: float = 30.0) -> dict[str, Any]:
        """The next event that is not a log record."""
        assert self.proc.stdout is not None
        while True:
            if not self.sel.select(timeout) or not (raw := self.proc.stdout.readline()):
                raise AssertionError(f"the child said nothing: {self.stderr()}")
            event: dict[str, Any] = json.loads(raw)
            if event["ev"] != "log":
                return event
            self.logs.append(f"{event['name']}: {event['msg']}")

    def kill(self) -> list[dict[str, Any]]:
        """SIGKILL, then whatever it printed before it died (every one of those was observed)."""
        assert self.proc.stdout is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        rest = [json.loads(raw) for raw in self.proc.stdout.read().splitlines()]
        self.logs += [f"{e['name']}: {e['msg']}" for e in rest if e["ev"] == "log"]
        self.close()
        return [e for e in rest if e["ev"] != "log"]

    def stderr(self) -> str:
        self.log.seek(0)
        return "\n".join(self.log.read().strip().splitlines()[-5:])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.sel.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.log.close()


class Acks:
    """What the hooks observed: index -> (role, text), the latest version of each message."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[str, str]] = {}

    def take(self, events: list[dict[str, Any]]) -> None:
        for e in events:
            if e["ev"] in ("added", "updated"):
                self.seen[e["i"]] = (e["role"], e["text"])

    def check(self, restored: list[tuple[str, str]]) -> None:
        """Every observed message is back as observed; only the newest may be newer than observed
        (its update reached the disk, the kill came before the hook printed it)."""
        assert len(restored) >= len(self.seen), f"lost messages: observed {len(self.seen)}, restored {len(restored)}"
        last = max(self.seen, default=-1)
        for i, (role, text) in self.seen.items():
            got = restored[i]
            if i == last and got != (role, text):
                assert got[0] == role and text == "" and got[1], f"message {i}: {got} vs observed {(role, text)}"
            else:
                assert got == (role, text), f"message {i}: restored {got}, observed {(role, text)}"


def message_files(storage: Path) -> list[Path]:
    return list((storage / f"session_{SID}" / "agents" / f"agent_{AID}" / "messages").glob("message_*.json"))


def talk_then_cut(lazy: LazyFS, manager: str, rng: random.Random, acks: Acks) -> dict[str, Any]:
    """Mount, restore (the child's first line), talk until a random ack, kill the child, cut the power.
    Returns the restore event, plus how many message files the mount showed just before the cut."""
    lazy.mount()
    child = Child(lazy.mountpoint, manager)
    try:
        restored = child.line()
        assert restored["ev"] == "restored", restored
        if manager == "durable":
            acks.check(restored_texts(restored))  # what the previous cut left, seen by this boot
        events = [child.line() for _ in range(rng.randint(2, 9))]
        time.sleep(rng.uniform(0, 0.05))  # land anywhere inside the next write, or between writes
        events += child.kill()
    finally:
        child.close()
    acks.take(events)
    assert any(e["ev"] == "added" for e in events)
    if manager == "durable":
        assert child.logs == []  # the scan found nothing to repair, and no write failed (acks mean on disk)
    restored["files_before_cut"] = len(message_files(lazy.mountpoint))
    lazy.cut_power()
    return restored


def restored_texts(event: dict[str, Any]) -> list[tuple[str, str]]:
    return [(role, text) for role, text in event["messages"]]


def test_stock_manager_loses_acknowledged_messages(lazy: LazyFS) -> None:
    acks = Acks()
    # Stock writes after the constructor hooks: only the newest observed message may be unwritten.
    written = talk_then_cut(lazy, "stock", random.Random(1), acks)["files_before_cut"]
    assert len(acks.seen) >= 2 and written >= len(acks.seen) - 1
    lazy.mount()
    child = Child(lazy.mountpoint, "durable")  # restore what the stock manager left, with our scan
    try:
        back = restored_texts(child.line())
    finally:
        child.close()
        lazy.cut_power()
    assert len(back) < len(acks.seen), "the lazy filesystem kept data that was never fsynced"


def test_every_acknowledged_message_survives_power_cuts(lazy: LazyFS) -> None:
    rng = random.Random(7)
    acks = Acks()
    for _ in range(5):
        restored = talk_then_cut(lazy, "durable", rng, acks)
        assert restored["quarantined"] == [], restored["quarantined"]
    lazy.mount()
    child = Child(lazy.mountpoint, "durable")
    try:
        final = child.line()
        acks.check(restored_texts(final))
        assert final["quarantined"] == []
        assert child.line()["i"] == len(final["messages"])  # the conversation goes on after the last cut
        assert child.logs == []
    finally:
        child.close()
    # a conversation long enough that the cuts fell on several turns
    assert len(acks.seen) >= 12
    assert sum(1 for role, text in acks.seen.values() if role == "assistant" and text) >= 4


# -- the child --------------------------------------------------------------------------------------
def _child(storage: str, manager: str) -> None:
    from strands.bidi import BidiAgent
    from strands.hooks import HookProvider, HookRegistry, MessageAddedEvent, MessageUpdatedEvent
    from strands.session.file_session_manager import FileSessionManager

    from edgevoice.models.local import LocalModel
    from edgevoice.session import DurableFileSessionManager

    def say(**event: Any) -> None:
        print(json.dumps(event), flush=True)

    class Relay(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            say(ev="log", level=record.levelname, name=record.name, msg=record.getMessage())

    logging.getLogger().addHandler(Relay(logging.WARNING))

    def text(message: Any) -> str:
        return " ".join(b.get("text", "") for b in message["content"])

    class Observer(HookProvider):
        def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
            registry.add_callback(MessageAddedEvent, self.added)
            registry.add_callback(MessageUpdatedEvent, self.updated)

        def added(self, e: MessageAddedEvent[Any]) -> None:
            say(ev="added", i=len(e.agent.messages) - 1, role=e.message["role"], text=text(e.message))

        def updated(self, e: MessageUpdatedEvent[Any]) -> None:
            i = next(i for i, m in enumerate(e.agent.messages) if m.get("tracking_id") == e.tracking_id)
            say(ev="updated", i=i, role=e.message["role"], text=text(e.message))

    sm = (DurableFileSessionManager if manager == "durable" else FileSessionManager)(SID, storage_dir=storage)
    agent = BidiAgent(model=LocalModel(pace_lead_s=None), session_manager=sm, agent_id=AID, hooks=[Observer()])
    report = getattr(sm, "scan_report", None)
    say(
        ev="restored",
        messages=[(m["role"], text(m)) for m in agent.messages],
        quarantined=[list(q) for q in report.quarantined] if report else [],
    )

    async def main() -> None:
        await agent.start()
        events = agent.receive()
        for line in itertools.cycle(LINES):
            await agent.send(line)
            while (await asyncio.wait_for(anext(events), 20))["type"] != "bidi_response_stop":
                pass

    asyncio.run(main())


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
