"""The whole voice loop on real parts: ALSA file PCMs, the real gate, a real BidiAgent with the
offline model, Strands' FileSessionManager on disk."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgevoice import config
from edgevoice.audio import Capture
from edgevoice.commands.demo import speak_to_raw
from edgevoice.daemon.connection import AgentBug, Phase
from edgevoice.daemon.state import State
from edgevoice.daemon.voice import StoreRetry, VoiceLoop
from edgevoice.models.local import LocalModel
from edgevoice.session.lock import lock_store
from tests.alsa import AsoundRc, alsa_home

EDGEVOICE = str(Path(sys.executable).parent / "edgevoice")


@pytest.fixture
def alsa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AsoundRc]:
    yield from alsa_home(tmp_path, monkeypatch)


def settings_for(sessions: Path) -> config.Settings:
    return config.replace(
        config.Settings(),
        audio={"capture_device": "mic", "playback_device": "spk"},
        session={"dir": str(sessions)},
    )


def converse(alsa: AsoundRc, tmp: Path, text: str, sessions: Path, **parts: Any) -> VoiceLoop:
    raw, answer = tmp / "mic.raw", tmp / "answer.wav"
    frames = speak_to_raw(text, "en-us", raw)
    alsa.capture("mic", raw).playback("spk", answer, fmt="wav").write()
    s = settings_for(sessions)
    capture = Capture("mic", period_ms=s.audio.period_ms, pace=4.0, max_frames=frames)
    loop = VoiceLoop(s, capture=capture, stop_when_input_ends=True, **parts)
    asyncio.run(asyncio.wait_for(loop.run(), 90))
    return loop


def stored_messages(sessions: Path) -> list[dict[str, object]]:
    d = sessions / "session_default" / "agents" / "agent_edgevoice" / "messages"
    files = sorted(d.glob("message_*.json"), key=lambda p: int(p.stem.split("_")[1]))
    return [json.loads(p.read_text())["message"] for p in files]


def text_of(message: dict[str, object]) -> str:
    content = message["content"]
    assert isinstance(content, list)
    return " ".join(str(block.get("text", "")) for block in content)


def wav_seconds_and_rms(path: Path) -> tuple[float, float]:
    with wave.open(str(path), "rb") as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
        return w.getnframes() / w.getframerate(), float(np.sqrt(np.mean(pcm**2))) if pcm.size else 0.0


def test_second_run_remembers_the_first(alsa: AsoundRc, tmp_path: Path) -> None:
    sessions = tmp_path / "sessions"
    first = converse(alsa, tmp_path, "My name is Alice.", sessions)
    assert ("user", "My name is Alice.") in [(r, t) for r, t in first.transcripts if r == "user"] or any(
        r == "user" and "alice" in t.lower() for r, t in first.transcripts
    )
    assert first.mic.turns_ended == 1 and first.speaker.responses_done == 1
    seconds, rms = wav_seconds_and_rms(tmp_path / "answer.wav")
    assert seconds > 0.5 and rms > 100, "the answer was not played through the playback PCM"

    second = converse(alsa, tmp_path, "What is my name?", sessions)
    answers = [t for r, t in second.transcripts if r == "assistant"]
    assert answers and "alice" in answers[-1].lower(), second.transcripts

    # Both conversations are on disk with their final transcript text (not the empty placeholders).
    msgs = stored_messages(sessions)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
    texts = [text_of(m).lower() for m in msgs]
    assert "alice" in texts[0] and "alice" in texts[1] and "name" in texts[2] and "alice" in texts[3]
    assert all(t.strip() for t in texts)


def test_loop_waits_for_a_missing_device_then_answers(alsa: AsoundRc, tmp_path: Path) -> None:
    """The capture device is absent at start (its file is missing); once it appears the loop goes on."""
    raw = tmp_path / "mic.raw"
    staged = tmp_path / "staged.raw"
    frames = speak_to_raw("What time is it?", "en-us", staged)
    alsa.capture("mic", raw).playback("spk", tmp_path / "answer.wav", fmt="wav").write()
    s = settings_for(tmp_path / "sessions")
    capture = Capture("mic", period_ms=30, pace=4.0, max_frames=frames, reopen_max_s=0.2)
    loop = VoiceLoop(s, capture=capture, stop_when_input_ends=True)

    async def main() -> None:
        task = asyncio.create_task(loop.run())
        await asyncio.sleep(0.8)
        assert loop.mic.frames_seen == 0 and not task.done()
        staged.rename(raw)  # the device comes back
        await asyncio.wait_for(task, 60)

    asyncio.run(main())
    assert capture.reopens >= 1 or capture.open_failures >= 1
    answers = [t for r, t in loop.transcripts if r == "assistant"]
    assert answers and "it is" in answers[0].lower(), loop.transcripts


def test_demo_command_twice(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    one = subprocess.run([EDGEVOICE, "demo", "--dir", str(d)], capture_output=True, text=True, timeout=180)
    assert one.returncode == 0, one.stderr
    assert "My name is Alice." in one.stdout and "heard:" in one.stdout and "answer:" in one.stdout
    two = subprocess.run([EDGEVOICE, "demo", "--dir", str(d)], capture_output=True, text=True, timeout=180)
    assert two.returncode == 0, two.stderr
    assert "What is my name?" in two.stdout
    answer = [line for line in two.stdout.splitlines() if line.startswith("answer:")]
    assert answer and "Alice" in answer[0], two.stdout
    assert f"session stored in: {d / 'sessions' / 'session_default'}" in two.stdout


def test_run_command_answers_from_a_config_file(alsa: AsoundRc, tmp_path: Path) -> None:
    raw = tmp_path / "mic.raw"
    frames = speak_to_raw("Hello.", "en-us", raw)
    alsa.capture("mic", raw).playback("spk", tmp_path / "out.raw").write()
    cfg = tmp_path / "edgevoice.toml"
    cfg.write_text(
        f'[audio]\ncapture_device = "mic"\nplayback_device = "spk"\n[session]\ndir = "{tmp_path / "s"}"\n'
        'session_id = "kitchen"\n'
    )
    r = subprocess.run(
        [EDGEVOICE, "run", "--config", str(cfg), "--input-pace", "4", "--input-frames", str(frames)],
        capture_output=True, text=True, timeout=120, env=alsa.env(),
    )
    assert r.returncode == 0, r.stderr
    assert "ready: first frame accepted" in r.stderr
    msgs = list((tmp_path / "s" / "session_kitchen" / "agents" / "agent_edgevoice" / "messages").glob("*.json"))
    assert len(msgs) == 2
    assert (tmp_path / "out.raw").stat().st_size > 16000  # the answer was played


def test_run_rejects_a_bad_session_id(tmp_path: Path) -> None:
    cfg = tmp_path / "e.toml"
    cfg.write_text('[session]\nsession_id = "../etc"\n')
    r = subprocess.run([EDGEVOICE, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "session.session_id" in r.stderr


class FlakyModel(LocalModel):
    """The offline model, whose first `fails` starts raise `error` (a refused connect, or a bug)."""

    def __init__(self, fails: int, error: Exception) -> None:
        super().__init__(pace_lead_s=None)
        self.fails = fails
        self.error = error
        self.starts = 0

    async def start(self, *args: Any, **kwargs: Any) -> None:
        self.starts += 1
        if self.fails:
            self.fails -= 1
            raise self.error
        await super().start(*args, **kwargs)


def test_a_refused_connect_is_retried_and_the_turn_still_answered(alsa: AsoundRc, tmp_path: Path) -> None:
    """The model refuses the first start: offline, then back once it started, and the turn spoken
    meanwhile (queued in the mic) is answered."""
    states: list[tuple[State, State]] = []
    phases: list[Phase] = []
    model = FlakyModel(1, ConnectionError("refused"))
    loop = converse(
        alsa, tmp_path, "What time is it?", tmp_path / "sessions",
        model=model, on_state=lambda o, n: states.append((o, n)), on_phase=lambda _o, n: phases.append(n),
    )
    assert model.starts == 2 and loop.connection.reconnects == 1
    went = [n for _o, n in states]
    # (the turn may open before or after the refusal: Strands is imported in a thread meanwhile)
    assert went.count(State.OFFLINE) == 1 and went[went.index(State.OFFLINE) + 1] is State.IDLE, states
    assert phases == [Phase.CONNECTING, Phase.BACKING_OFF, Phase.CONNECTING, Phase.CONNECTED, Phase.STOPPED]
    answers = [t for r, t in loop.transcripts if r == "assistant"]
    assert answers and "it is" in answers[0].lower(), loop.transcripts


def test_a_bug_in_the_model_stops_the_loop(alsa: AsoundRc, tmp_path: Path) -> None:
    """A TypeError is not a network drop: no retry, the loop stops with AgentBug, and the store's lock
    and the audio threads are released on the way out."""
    sessions = tmp_path / "sessions"
    model = FlakyModel(5, TypeError("start() got an unexpected keyword argument 'tools'"))
    with pytest.raises(AgentBug, match="TypeError"):
        converse(alsa, tmp_path, "Hello.", sessions, model=model)
    assert model.starts == 1
    again = lock_store(str(sessions))  # the lock went with the loop
    assert again is not None
    again.release()


class Beside:
    """A service: counts its runs, and notes that it was cancelled when the loop stopped."""

    def __init__(self) -> None:
        self.ran = 0
        self.cancelled = False

    async def run(self) -> None:
        self.ran += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


def test_services_run_beside_the_loop(alsa: AsoundRc, tmp_path: Path) -> None:
    one, two = Beside(), Beside()
    loop = converse(alsa, tmp_path, "Hello.", tmp_path / "sessions", services=[one, two])
    assert (one.ran, one.cancelled, two.ran, two.cancelled) == (1, True, 1, True)
    assert loop.services == [one, two]
    assert [type(s) for s in VoiceLoop(settings_for(tmp_path / "s")).services] == [StoreRetry]  # the default
