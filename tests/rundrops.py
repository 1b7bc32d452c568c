"""`edgevoice run` as a subprocess against a provider fake that a test kills, hangs or refuses at a chosen
stage of a turn, with spoken turns from espeak-ng through an ALSA file PCM, paced in real time.

`Conversation` builds the input (several voices and sentences, silence between them), the config and the
environment; `run()` starts the daemon, lets a `Stage` watcher act on the fake from a thread when the fake
reaches that stage, and returns the exit code, the log and the stored messages. The checks a drop must
pass are in `check_store`: numbering without gaps, no message stored twice, no empty transcript.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevoice.commands.demo import speak_to_raw
from tests.alsa import AsoundRc
from tests.fakes.agent import message_files

EDGEVOICE = str(Path(sys.executable).parent / "edgevoice")
CLOUD_ENV = (
    *("OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "SSL_CERT_FILE"),
    *("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
)
"""Left out of the daemon's environment unless the test sets them: the fake, not this machine, decides."""


@dataclass
class Result:
    rc: int
    log: str
    messages: list[dict[str, Any]]
    files: list[str]
    seconds: float


@dataclass
class Conversation:
    """Utterances (text, espeak-ng voice) spoken one after another, each with silence around it."""

    tmp: Path
    utterances: list[tuple[str, str]]
    model: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    gap_s: float = 0.0
    """Extra silence after each utterance (speak_to_raw already leaves 2 s)."""

    def __post_init__(self) -> None:
        self.home = self.tmp / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.sessions = self.tmp / "sessions"
        raw = b""
        for i, (text, voice) in enumerate(self.utterances):
            part = self.tmp / f"utt{i}.raw"
            speak_to_raw(text, voice, part)
            raw += part.read_bytes() + bytes(int(self.gap_s * 50) * 640)  # 20 ms of 16 kHz silence each
        mic = self.tmp / "mic.raw"
        mic.write_bytes(raw)
        self.frames = len(raw) // 960  # 30 ms periods of 16 kHz S16_LE (audio.period_ms, the default)
        AsoundRc(self.home).capture("mic", mic).playback("spk", self.tmp / "out.wav", fmt="wav").write()
        lines = ["[audio]", 'capture_device = "mic"', 'playback_device = "spk"', "[model]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in self.model.items()]
        lines += ["[session]", f'dir = "{self.sessions}"']
        self.config = self.tmp / "edgevoice.toml"
        self.config.write_text("\n".join(lines) + "\n")

    def run(self, watcher: Callable[[], None] | None = None, timeout_s: float = 120.0) -> Result:
        env = {**os.environ, "HOME": str(self.home), **self.env}
        for var in CLOUD_ENV:
            if var not in self.env:
                env.pop(var, None)
        cmd = [EDGEVOICE, "-v", "run", "--config", str(self.config), "--input-pace", "1.0"]
        cmd += ["--input-frames", str(self.frames)]
        log = self.tmp / "daemon.log"
        started = time.monotonic()
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
            thread = threading.Thread(target=watcher, daemon=True) if watcher else None
            if thread:
                thread.start()
            try:
                rc = proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                rc = -9
        text = log.read_text(errors="replace")
        paths = message_files(self.sessions, "default", "edgevoice")
        files = [p.name for p in paths]
        messages = [json.loads(p.read_text())["message"] for p in paths]
        return Result(rc, text, messages, files, time.monotonic() - started)


def text_of(message: dict[str, Any]) -> str:
    return " ".join(str(b["text"]) for b in message["content"] if "text" in b).strip()


LOST = "answer(s) lost with the connection; telling the user"
"""What the daemon logs when it tells the user answers were lost with a connection."""


def answers(r: Result) -> list[str]:
    """The assistant texts on disk, in order."""
    return [text_of(m) for m in r.messages if m["role"] == "assistant" and text_of(m)]


def lost(r: Result) -> int:
    """Answers the daemon told the user were lost, summed over its log."""
    return sum(int(m.group(1)) for m in re.finditer(r"model: (\d+) answer\(s\) lost", r.log))


def check_store(r: Result) -> None:
    """What every drop must leave: message_0..n-1 with no gap, nothing stored twice, no empty transcript."""
    assert r.files == [f"message_{i}.json" for i in range(len(r.files))], r.files
    seen = [(m["role"], json.dumps(m["content"], sort_keys=True)) for m in r.messages]
    dupes = [s for s in seen if seen.count(s) > 1 and s[0] == "user"]
    assert not dupes, f"stored twice: {dupes}"
    for m in r.messages:
        if any("text" in b for b in m["content"]):
            assert text_of(m), f"an empty transcript was stored: {m}"


def until(predicate: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False
