"""Driving a real BidiAgent against a fake: a reader task that keeps every event, and bounded waits.

The agent's event queue holds one event, so something must read `agent.receive()` all the time; the reader
also keeps what it raised (`error`) and whether it ended (`ended`), which is what a drop looks like from
the application's side.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from strands.bidi import BidiAgent
from strands.bidi.types.media import AudioDelta


class Reader:
    def __init__(self, agent: BidiAgent) -> None:
        self.agent = agent
        self.events: list[Any] = []
        self.error: BaseException | None = None
        self.ended = False
        self._changed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for event in self.agent.receive():
                self.events.append(event)
                self._changed.set()
        except Exception as e:
            self.error = e
        finally:
            self.ended = True
            self._changed.set()

    async def wait(self, predicate: Callable[[Reader], bool], timeout: float = 10) -> bool:
        """Until `predicate(self)` holds (True) or `timeout` seconds passed (False)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return predicate(self)
        return True

    def of(self, kind: str) -> list[Any]:
        return [e for e in self.events if isinstance(e, dict) and e.get("type") == kind]

    def count(self, kind: str) -> int:
        return len(self.of(kind))

    def transcripts(self, role: str) -> list[str]:
        return [e["transcript"] for e in self.of("bidi_transcript_block") if e["role"] == role]

    def audio_out(self) -> bytes:
        return b"".join(base64.b64decode(e["audio"]) for e in self.of("bidi_audio_delta"))

    def tool_result_messages(self) -> list[Any]:
        from strands.types._events import ToolResultMessageEvent

        return [e for e in self.events if isinstance(e, ToolResultMessageEvent)]

    async def cancel(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(self.task, 5)


async def speak(agent: BidiAgent, nbytes: int, chunk: int = 640) -> None:
    """`nbytes` of 16-bit PCM into the agent, in 20 ms chunks at 16 kHz (quiet noise, never silence)."""
    sent = 0
    while sent < nbytes:
        n = min(chunk, nbytes - sent)
        await agent.send(AudioDelta(format="pcm", source={"bytes": b"\x07\x00" * (n // 2)}))
        sent += n


def message_files(storage: Path, session_id: str, agent_id: str) -> list[Path]:
    """The message files of a FileSessionManager-layout store, in index order (none when it has no agent yet)."""
    directory = storage / f"session_{session_id}" / "agents" / f"agent_{agent_id}" / "messages"
    return sorted(directory.glob("message_*.json"), key=lambda p: int(p.stem.split("_")[1]))


def stored_messages(storage: Path, session_id: str, agent_id: str) -> list[dict[str, Any]]:
    """The messages a FileSessionManager-layout store holds, in order."""
    return [json.loads(p.read_text())["message"] for p in message_files(storage, session_id, agent_id)]


def texts(messages: list[dict[str, Any]], role: str) -> list[str]:
    return [b["text"] for m in messages if m["role"] == role for b in m["content"] if "text" in b]
