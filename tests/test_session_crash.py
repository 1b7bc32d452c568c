"""SIGKILL crash test of the durable session store, with stock FileSessionManager as the control.

Real BidiAgent, real local model (espeak-ng), real files under tmp_path; see tests/crashkit.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from strands.bidi import BidiAgent
from strands.hooks import HookProvider, HookRegistry, MessageAddedEvent, MessageUpdatedEvent

from edgevoice.models.local import LocalModel
from tests.crashkit import EMPTY, CrashServer, Truth, content_hash, make_manager, messages_dir, run_kills

KILLS = 200


@pytest.fixture(scope="module")
def server() -> Iterator[CrashServer]:
    with CrashServer() as s:
        yield s


# -- the ordering: what a hook passed to the constructor finds on disk -----------------------------


class DiskProbe(HookProvider):
    """At every message event, reads the message's file: missing, older than the event, or the same."""

    def __init__(self, mdir: Path) -> None:
        self.mdir = mdir
        self.seen: list[tuple[str, str, str]] = []

    def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
        registry.add_callback(MessageAddedEvent, self._added)
        registry.add_callback(MessageUpdatedEvent, self._updated)

    def _look(self, what: str, index: int, message: Any) -> None:
        path = self.mdir / f"message_{index}.json"
        if not path.exists():
            state = "missing"
        else:
            state = "same" if json.loads(path.read_text())["message"]["content"] == message["content"] else "older"
        self.seen.append((what, message["role"], state))

    def _added(self, event: MessageAddedEvent[Any]) -> None:
        self._look("add", len(event.agent.messages) - 1, event.message)

    def _updated(self, event: MessageUpdatedEvent[Any]) -> None:
        ids = [m.get("tracking_id") for m in event.agent.messages]
        self._look("update", ids.index(event.tracking_id), event.message)


def one_turn(manager: Any, probe: DiskProbe) -> None:
    async def go() -> None:
        agent = BidiAgent(model=LocalModel(pace_lead_s=None), session_manager=manager, hooks=[probe])
        await agent.start()
        try:
            await agent.send("my name is alice")
            events = agent.receive()
            while (await asyncio.wait_for(anext(events), 20))["type"] != "bidi_response_stop":
                pass
        finally:
            await agent.stop()

    asyncio.run(asyncio.wait_for(go(), 60))


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("durable", [("add", "user", "same"), ("add", "assistant", "same"), ("update", "assistant", "same")]),
        # Stock: the constructor hook runs before the store writes, and updates are never stored.
        ("stock", [("add", "user", "missing"), ("add", "assistant", "missing"), ("update", "assistant", "older")]),
    ],
)
def test_constructor_hook_finds_the_message_on_disk(
    tmp_path: Path, kind: str, expected: list[tuple[str, str, str]]
) -> None:
    probe = DiskProbe(messages_dir(tmp_path, "order"))
    one_turn(make_manager(kind, "order", str(tmp_path)), probe)
    assert probe.seen == expected
    restored = BidiAgent(model=LocalModel(), session_manager=make_manager(kind, "order", str(tmp_path))).messages
    answer = restored[1]["content"]
    assert answer == ([{"text": "Nice to meet you, Alice."}] if kind == "durable" else [])


# -- the checker itself ------------------------------------------------------------------------------


def event(k: str, e: str, i: int, t: str, role: str, text: str | None) -> dict[str, Any]:
    content = [] if text is None else [{"text": text}]
    return {"k": k, "e": e, "i": i, "t": t, "role": role, "h": content_hash({"content": content})}


def test_truth_allows_only_the_write_in_flight() -> None:
    def truth() -> Truth:
        t = Truth()
        for e in (
            event("obs", "add", 0, "u", "user", "hi"),
            event("obs", "add", 1, "a", "assistant", None),
            event("pre", "upd", 1, "a", "assistant", "hello"),
        ):
            t.take(e)
        return t

    hi, pending = ("u", "user", content_hash({"content": [{"text": "hi"}]})), ("a", "assistant", EMPTY)
    final = ("a", "assistant", content_hash({"content": [{"text": "hello"}]}))
    assert truth().check(1, [hi, pending]) == ([], 0)  # the update was in flight: not yet on disk...
    assert truth().check(1, [hi, final]) == ([], 0)  # ...or already there
    found, lost = truth().check(1, [hi])
    assert [v.kind for v in found] == ["missing"] and lost == 1
    found, lost = truth().check(1, [hi, pending, ("x", "user", EMPTY)])
    assert [v.kind for v in found] == ["phantom"] and lost == 0
    t = truth()
    t.take(event("obs", "upd", 1, "a", "assistant", "hello"))  # observed: now it must be on disk
    found, lost = t.check(1, [hi, pending])
    assert [(v.kind, v.index) for v in found] == [("stale", 1)] and lost == 1
    found, _ = truth().check(1, [hi, ("a", "assistant", content_hash({"content": [{"text": "hel"}]}))])
    assert [v.kind for v in found] == ["changed"]


def test_harness_catches_a_store_that_acknowledges_before_writing(tmp_path: Path, server: CrashServer) -> None:
    run = run_kills(tmp_path, 10, manager="writebehind", seed=3, server=server)
    assert run.kills == 10
    assert "missing" in run.kinds()
    assert run.lost > 0


# -- the crash test ------------------------------------------------------------------------------------


def test_durable_store_survives_sigkills(tmp_path: Path, server: CrashServer) -> None:
    run = run_kills(tmp_path, KILLS, manager="durable", seed=11, kills_per_session=40, server=server)
    assert run.kills == KILLS
    assert run.violations == []
    assert run.survived == KILLS and run.lost == 0
    assert run.observed > 2 * KILLS  # the children were busy appending, not idle
    assert run.in_write > 0  # some kills landed inside a write (between the pre and observed lines)
    assert run.messages > KILLS


def test_stock_store_loses_only_what_it_really_loses(tmp_path: Path, server: CrashServer) -> None:
    """The control: stock stores every assistant transcript empty (it ignores MessageUpdatedEvent) and
    may lose a message a constructor hook already saw; nothing else, and never a corrupt file."""
    run = run_kills(tmp_path, 20, manager="stock", seed=5, kills_per_session=20, server=server)
    assert run.kills == 20
    assert run.kinds() <= {"stale", "missing"}
    stale = [v for v in run.violations if v.kind == "stale"]
    assert stale
    assert all(v.restored is not None and v.restored[1:] == ("assistant", EMPTY) for v in stale)
