"""`edgevoice demo`: the appliance's main job with no sound card, network or credentials.

A sentence spoken by espeak-ng goes in through an ALSA `file` capture PCM; the offline model
answers through an ALSA `file` playback PCM into a WAV; the conversation is stored, so a second
run remembers the first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

from .. import config
from ..pcm import RATE

FIRST = "My name is Alice."
SECOND = "What is my name?"
PERIOD_MS = 30


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--say", metavar="TEXT", help=f"what to say (default: {FIRST!r}, then {SECOND!r})")
    parser.add_argument("--dir", metavar="DIR", help="where the demo keeps its files and sessions")
    parser.add_argument("--fresh", action="store_true", help="forget earlier demo conversations first")
    parser.add_argument("--config", metavar="PATH", help="TOML settings to start from (default: embedded defaults)")
    parser.set_defaults(func=run)


def default_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "edgevoice" / "demo"


def _has_history(session_dir: Path, settings: config.Settings) -> bool:
    from ..session.current import current_session_id

    s = settings.session
    sid = current_session_id(s)
    msgs = session_dir / f"session_{sid}" / "agents" / f"agent_{s.agent_id}" / "messages"
    return msgs.is_dir() and any(msgs.iterdir())


def speak_to_raw(text: str, voice: str, out: Path, rate: int = RATE) -> int:
    """espeak-ng speech at `rate`, mono S16_LE, with silence around it; returns the frame count."""
    from ..pcm import ms_bytes, resample

    if shutil.which("espeak-ng") is None:
        raise config.ConfigError("demo: espeak-ng is not installed (apt-get install espeak-ng)")
    wav = out.with_suffix(".wav")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True)
    with wave.open(str(wav), "rb") as w:
        pcm, src_rate = w.readframes(w.getnframes()), w.getframerate()
    pcm = resample(pcm, src_rate, rate)
    frame = ms_bytes(PERIOD_MS, rate)
    body = bytes(ms_bytes(300, rate)) + pcm + bytes(ms_bytes(2000, rate))  # 0.3 s before, 2 s after
    body += bytes(-len(body) % frame)
    out.write_bytes(body)
    return len(body) // frame


def write_asoundrc(home: Path, mic_raw: Path, answer_wav: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / ".asoundrc").write_text(
        f"""pcm.edgevoice_mic {{
  type file
  slave.pcm "null"
  file "/dev/null"
  infile "{mic_raw}"
  format "raw"
}}
pcm.edgevoice_speaker {{
  type file
  slave.pcm "null"
  file "{answer_wav}"
  format "wav"
}}
"""
    )


def _usable_dir(base: Path) -> None:
    """`--dir` must be (or become) a writable directory: one line, not a traceback, when it cannot."""
    from ..errors import UserError

    if base.exists() and not base.is_dir():
        raise UserError(f"demo: --dir {base} is not a directory")
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"demo: --dir {base} cannot be created ({e.strerror})") from None
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"demo: --dir {base} is not writable")


def run(args: argparse.Namespace) -> int:
    import logging

    if not args.verbose:  # the demo prints its own story; -v shows the daemon's log too
        logging.getLogger().setLevel(logging.WARNING)
    base = Path(args.dir) if args.dir else default_dir()
    _usable_dir(base)
    sessions = base / "sessions"
    if args.fresh and sessions.exists():
        shutil.rmtree(sessions)
    settings = config.load(args.config) if args.config else config.Settings()
    settings = config.replace(
        settings,
        audio={"capture_device": "edgevoice_mic", "playback_device": "edgevoice_speaker", "period_ms": PERIOD_MS},
        session={"dir": str(sessions)},
    )
    text = args.say or (SECOND if _has_history(sessions, settings) else FIRST)
    home = base / "alsa-home"
    mic_raw, answer = base / "mic.raw", base / "answer.wav"
    home.mkdir(parents=True, exist_ok=True)
    frames = speak_to_raw(text, "en-us", mic_raw)
    answer.unlink(missing_ok=True)
    write_asoundrc(home, mic_raw, answer)
    # alsa-lib reads $HOME/.asoundrc when it first opens a PCM: point it at the demo's, for this process only.
    os.environ["HOME"] = str(home)
    print(f"you say: {text!r}  (espeak-ng, through the ALSA file PCM 'edgevoice_mic')", flush=True)
    return asyncio.run(_converse(settings, frames, answer, sessions))


async def _converse(settings: config.Settings, frames: int, answer: Path, sessions: Path) -> int:
    from ..daemon.connection import AgentBug
    from ..daemon.voice import VoiceLoop, make_capture

    def show(role: str, text: str) -> None:
        who = "heard" if role == "user" else "answer"
        print(f"{who}: {text}", flush=True)

    capture = make_capture(settings, pace=4.0, max_frames=frames)
    loop = VoiceLoop(settings, capture=capture, stop_when_input_ends=True, on_transcript=show)
    try:
        await asyncio.wait_for(loop.run(), timeout=120)
    except TimeoutError:
        print("demo: no answer within 120 s", file=sys.stderr)
        return 1
    except AgentBug as e:  # logged with its traceback
        print(f"demo: the model failed: {e}", file=sys.stderr)
        return 1
    users = [t for r, t in loop.transcripts if r == "user"]
    answers = [t for r, t in loop.transcripts if r == "assistant"]
    if not users or not answers:
        print("demo: the model did not answer (no transcript)", file=sys.stderr)
        return 1
    seconds = 0.0
    if answer.exists():
        with wave.open(str(answer), "rb") as w:
            seconds = w.getnframes() / w.getframerate()
    print(f"answer audio: {answer} ({seconds:.1f} s, through the ALSA file PCM 'edgevoice_speaker')")
    sid = loop.session_manager.session_id if loop.session_manager else settings.session.session_id
    print(f"session stored in: {sessions / ('session_' + sid)}")
    return 0
