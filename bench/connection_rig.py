"""The daemon's voice loop, in process, against the OpenAI Realtime fake: what bench/rows_connection.py drives.

Everything from the mic's queue to the session store is the daemon's own: `VoiceLoop` with its `Connection`
(phases, backoff, the watch for hung connections, the offline fallback, notices), a real `BidiAgent` with
Strands' OpenAI Realtime model from `edgevoice.models.make_model` (`model.endpoint` = the fake), the
durable store on a temporary directory. Only the two ends are stand-ins, so that a conversation can run
faster than real time: no capture device (turns are pushed through the mic's push-to-talk path, press,
frames, release, as the button would) and a playback sink that plays instantly (never "playing", so no
barge-in and no echo tail). User turns are espeak-ng speech (the offline fallback hears real words).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from edgevoice import config
from edgevoice.daemon.connection import Phase
from edgevoice.daemon.voice import VoiceLoop
from tests.fakes.base import Turn
from tests.fakes.openai import FakeOpenAIRealtime

FRAME = 960  # one 30 ms period of 16 kHz S16_LE (audio.period_ms, the default)
UTTERANCES = ("What time is it?", "My name is Alice.", "What is the date today?", "Hello, how are you?")
AGENT_DIR = Path("session_default") / "agents" / "agent_edgevoice" / "messages"


class NoCapture:
    """The capture device. Turns go in through the mic's push-to-talk path, so nothing is ever read."""

    async def start(self) -> None:
        return

    async def stop(self) -> None:
        return

    async def read(self) -> bytes:
        await asyncio.get_running_loop().create_future()  # never set: the pump waits here until the loop stops
        return b""


class Sink:
    """The playback device: takes every chunk at once. `model_audio_at` holds when model audio (not a notice)
    reached it; `model_bytes` is the speaker's count of model audio, set once the loop is built."""

    is_playing = False
    rate = 16000
    buffer_frames = 0

    def __init__(self) -> None:
        self.on_start: Callable[[], None] | None = None
        self.on_idle: Callable[[], None] | None = None
        self.model_bytes: Callable[[], int] = lambda: 0
        self.model_audio_at: list[float] = []
        self._counted = 0

    def start(self) -> None:
        return

    def stop(self) -> None:
        return

    def play(self, pcm: bytes, rate: int) -> None:
        n = self.model_bytes()
        if n != self._counted:  # the speaker counts model audio before it plays it; notices it does not count
            self._counted = n
            self.model_audio_at.append(time.monotonic())

    def flush(self) -> int:
        return 0


def utterances(directory: Path) -> list[list[bytes]]:
    """Each of UTTERANCES as espeak-ng speech in 30 ms frames, the digital silence around it cut off (a turn
    ends with the mic's own end marker, as when the button is released)."""
    from edgevoice.commands.demo import speak_to_raw

    out = []
    for i, text in enumerate(UTTERANCES):
        raw = directory / f"utt{i}.raw"
        speak_to_raw(text, "en-us", raw)
        pcm = raw.read_bytes()
        frames = [pcm[j : j + FRAME] for j in range(0, len(pcm), FRAME)]
        while frames and not any(frames[-1]):
            frames.pop()
        while frames and not any(frames[0]):
            frames.pop(0)
        out.append(frames)
    return out


def fake_turns(n: int, chunks: int = 5) -> list[Turn]:
    """Scripted answers with texts unique to each turn, so the store can be checked turn by turn. The turn
    ends when the fake hears the mic's end marker (500 ms of digital silence after speech)."""
    return [
        Turn(user=f"user turn {k}", assistant=f"answer number {k}", audio_chunks=chunks, silence_ms=500)
        for k in range(n)
    ]


class Rig:
    """One voice loop over a fresh store in `root`, against `fake`. `phases` records (time, new phase)."""

    def __init__(self, root: Path, fake: FakeOpenAIRealtime, **model: Any) -> None:
        self.root = root
        self.fake = fake
        self.sink = Sink()
        self.phases: list[tuple[float, Phase]] = []
        self.on_phase: Callable[[Phase, Phase], None] | None = None
        settings = config.replace(
            config.Settings(),
            gate={"mode": "push_to_talk"},
            model={"provider": "openai_realtime", "endpoint": fake.url, **model},
            session={"dir": str(root / "sessions")},
        )
        self.loop = VoiceLoop(settings, capture=NoCapture(), playback=self.sink, on_phase=self._phase)  # type: ignore[arg-type]
        self.sink.model_bytes = lambda: self.loop.speaker.audio_bytes
        # The offline fallback paces its audio at real time; the sink plays at once, so that would only stretch
        # the compressed conversation. Everything else about it is the daemon's (built once, as the builder does).
        from edgevoice.models.local import LocalModel

        s = settings
        self.loop.agents._fallback_model = LocalModel(
            s.local, system_prompt=s.model.system_prompt, offline_fallback=True, pace_lead_s=None
        )
        self.task: asyncio.Task[None] | None = None

    def _phase(self, old: Phase, new: Phase) -> None:
        self.phases.append((time.monotonic(), new))
        if self.on_phase:
            self.on_phase(old, new)

    def start(self) -> None:
        self.task = asyncio.create_task(self.loop.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self.task, 15)

    def turn(self, frames: list[bytes]) -> None:
        """A whole push-to-talk turn: press, its frames, release (then the mic queues the end marker)."""
        self.press(frames)
        self.release()

    def press(self, frames: list[bytes]) -> None:
        self.loop.mic.press()
        for f in frames:
            self.loop.mic.handle(f)

    def release(self) -> None:
        self.loop.mic.release()

    @property
    def settled(self) -> bool:
        """Every turn that ended was answered or told it was lost, and no notice is still being said."""
        loop = self.loop
        return (
            loop.speaker.responses_done + loop.turns_lost >= loop.mic.turns_ended
            and not loop.notices.busy
            and not loop.mic.pending
        )

    def stored(self) -> tuple[list[int], list[dict[str, Any]]]:
        """(file numbers, messages) of the session on disk, in number order."""
        d = self.root / "sessions" / AGENT_DIR
        files = sorted(((int(p.stem.split("_")[1]), p) for p in d.glob("message_*.json")), key=lambda x: x[0])
        return [n for n, _ in files], [json.loads(p.read_text())["message"] for _, p in files]


async def until(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.002) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step_s)
    return True


@contextlib.contextmanager
def environment() -> Iterator[Path]:
    """A temporary directory; a fake OpenAI key in the environment; the daemon's log kept in memory (a
    handler on the root logger, so the drops' ERROR lines do not flood the bench's table) and restored."""
    saved_key = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = "sk-bench-fake-edgevoice-connection"
    root = logging.getLogger()
    Kept.lines.clear()
    handler = Kept()
    ours = logging.getLogger("edgevoice")
    level = ours.level
    ours.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        with tempfile.TemporaryDirectory(prefix="edgevoice-bench-conn-") as d:
            yield Path(d)
    finally:
        # A fake's answers parked by a hang are destroyed with its loop; collect them while asyncio's
        # "Task was destroyed but it is pending" still goes to this log rather than to the bench's output.
        gc.collect()
        root.removeHandler(handler)
        ours.setLevel(level)
        if saved_key is None:
            os.environ.pop("OPENAI_API_KEY", None)
        else:
            os.environ["OPENAI_API_KEY"] = saved_key


class Kept(logging.Handler):
    """Keeps the log lines of the current run (`Kept.lines`), for the summary and for diagnosing a bad row."""

    lines: ClassVar[list[str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            Kept.lines.append(f"{record.name}: {record.getMessage()}")
