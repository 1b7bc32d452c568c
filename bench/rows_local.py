"""The offline `local` model: its recogniser against pocketsphinx's stock setup, and turn latency.

The anchor for every recogniser row is pocketsphinx 5.1.1 as shipped (general language model, full
dictionary) on the same audio, prepared the same way. Speech is espeak-ng (US voices) at 165 wpm.
Load time and RSS are measured in fresh interpreters (peak RSS as VmHWM, baseline after imports).
Latency is from the last byte of a turn's end marker to the first audio delta, through a BidiAgent.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from bench.common import Row, child_json

VOICES = ("en-us", "en-us+m3", "en-us+f2")
DEMO = ("My name is Alice.", "What is my name?")
COMMANDS = (
    "What time is it?",
    "What is the date?",
    "What day is it?",
    "What did I say before?",
    "Who am I?",
    "Hello.",
    "Thank you.",
    "Stop.",
    "How are you?",
    "Tell me a joke.",
    "Goodbye.",
    "What can you do?",
    "Say that again.",
)

_CHILD = r"""
import numpy, pocketsphinx
from edgevoice.models import stt
base = hwm_kb()
t0 = time.perf_counter()
if sys.argv[1] == "local":
    stt.SpeechToText().load()
else:
    pocketsphinx.Decoder(loglevel="FATAL")
print(json.dumps({"load_s": time.perf_counter() - t0, "rss_kb": hwm_kb() - base}))
"""


class _Stock:
    """pocketsphinx as shipped: general LM, full dictionary."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self._d = Decoder(loglevel="FATAL")

    def transcribe(self, pcm: bytes) -> str:
        from edgevoice.models import stt
        from edgevoice.pcm import samples

        self._d.start_utt()
        self._d.process_raw(stt.prepare(samples(pcm)).tobytes(), full_utt=True)
        self._d.end_utt()
        hyp = self._d.hyp()
        return hyp.hypstr if hyp is not None else ""


def _speech(text: str, voice: str) -> bytes:
    from edgevoice.models.tts import TextToSpeech

    return TextToSpeech(voice=voice).synthesize(text)


def _accuracy(quick: bool) -> Iterator[Row]:
    from datetime import datetime

    from edgevoice.models import stt, vocabulary
    from edgevoice.models.responder import normalize, respond

    now = datetime(2025, 11, 25, 15, 7)
    # Quick: two voices (the stock decoder is the slow part); the same 40 names, so the rate stays steady.
    voices = VOICES[:2] if quick else VOICES
    names = random.Random(3).sample(sorted(vocabulary.names()), 40)
    sets = {
        "demo": DEMO,
        "commands": COMMANDS,
        "names": tuple(f"My name is {n.title()}." for n in names),
    }
    ours, stock = stt.shared(), _Stock()
    ours.load()
    cpu = {"ours": 0.0, "stock": 0.0}
    audio_s = 0.0
    for label, phrases in sets.items():
        hits = {"ours": 0, "stock": 0}
        total = 0
        for voice in voices:
            for phrase in phrases:
                pcm = _speech(phrase, voice)
                audio_s += len(pcm) / 32000
                total += 1
                for who, rec in (("ours", ours), ("stock", stock)):
                    t0 = time.process_time()
                    heard = rec.transcribe(pcm)
                    cpu[who] += time.process_time() - t0
                    if label == "names":
                        hits[who] += normalize(heard) == normalize(phrase)
                    else:
                        hits[who] += respond([], stt.tidy(heard), now) == respond([], phrase, now)
        what = "exact" if label == "names" else "same answer"
        goal = {"demo": "value == 1", "commands": "value >= 0.9", "names": "value >= 0.6"}[label]
        yield Row(
            f"local.stt.{label}_right ({what})",
            hits["ours"] / total,
            "share",
            hits["stock"] / total,
            goal,
        )
    yield Row("local.stt.cpu_per_audio_s", cpu["ours"] / audio_s, "s/s", cpu["stock"] / audio_s, "ratio <= 1")


def _latency(quick: bool) -> Iterator[Row]:
    from strands.bidi import BidiAgent
    from strands.bidi.types import AudioDelta

    from edgevoice.models import stt
    from edgevoice.models.local import LocalModel
    from edgevoice.pcm import ms_bytes

    pcm = _speech("What time is it?", "en-us")
    end = bytes(ms_bytes(600))
    stt_s = []
    for _ in range(3 if quick else 10):
        t0 = time.perf_counter()
        stt.shared().transcribe(pcm + end[: ms_bytes(400)])
        stt_s.append(time.perf_counter() - t0)

    async def turns(n: int) -> list[float]:
        agent = BidiAgent(model=LocalModel(pace_lead_s=None))
        await agent.start()
        events = agent.receive()
        out = []
        try:
            for _ in range(n):
                data = pcm + end
                for i in range(0, len(data), 960):
                    await agent.send(AudioDelta(format="pcm", source={"bytes": data[i : i + 960]}))
                t0 = time.perf_counter()
                first: float | None = None
                async for e in events:
                    if first is None and e["type"] == "bidi_audio_delta":
                        first = time.perf_counter() - t0
                    if e["type"] == "bidi_response_stop":
                        break
                assert first is not None
                out.append(first)
        finally:
            await agent.stop()
        return out

    lat = asyncio.run(turns(3 if quick else 10))
    yield Row(
        "local.turn.end_marker_to_first_audio_ms (median)",
        1000 * sorted(lat)[len(lat) // 2],
        "ms",
        1000 * sorted(stt_s)[len(stt_s) // 2],
        "ratio <= 1.5",
    )


def _tts(quick: bool) -> Iterator[Row]:
    from edgevoice.models.tts import TextToSpeech

    text = "I'm working offline. I can remember your name, tell you the time and the date."
    t = TextToSpeech()
    wall = audio = 0.0
    for _ in range(3 if quick else 10):
        t0 = time.perf_counter()
        pcm = t.synthesize(text)
        wall += time.perf_counter() - t0
        audio += len(pcm) / 32000
    yield Row("local.tts.wall_per_audio_s", wall / audio, "s/s", None, "value <= 0.1")


def rows(quick: bool) -> Iterable[Row]:
    local, stock = child_json(_CHILD, "local"), child_json(_CHILD, "stock")
    yield Row("local.stt.load_s", local["load_s"], "s", stock["load_s"], "ratio <= 0.6")
    yield Row("local.stt.rss_mb", local["rss_kb"] / 1024, "MB", stock["rss_kb"] / 1024, "ratio <= 0.3")
    yield from _accuracy(quick)
    yield from _latency(quick)
    yield from _tts(quick)


def _main(argv: list[str]) -> Any:  # `python -m bench.rows_local` prints the rows
    for r in rows(quick="--quick" in argv):
        print(r.as_json())


if __name__ == "__main__":
    _main(sys.argv)
