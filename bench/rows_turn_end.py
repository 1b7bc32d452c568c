"""End of the user's turn to the request for an answer, OpenAI Realtime: the device's own commit against the
server's VAD (Strands' default, 500 ms of silence), both measured in the same run on the same speech.

Real parts from the gate to the wire (tests/test_end_of_turn.py's `TurnRig`): espeak-ng utterances, paced in
real time through the real gate and `GatedMic`, a real `BidiAgent` with the real `EndpointOpenAIRealtimeModel`,
against the OpenAI fake on 127.0.0.1, whose VAD ends a turn on trailing digital silence as long as the
session asks (audio time, as the real server measures it: `speech_stopped.audio_end_ms` "includes the
silence duration"). The device's commit is `commit_turns`; the anchor turns it off (Strands' own config:
the server's VAD ends the turn on the mic's 600 ms end marker of digital silence).

- `turn_end.commit_ms (openai)`: from the gate's turn end (the mic's `on_turn_ended`) to the fake's end of the
  turn (its commit, or its VAD), median over the turns. Speech in a noise floor 30 dB down, so that only the
  end marker is digital silence: the server's VAD can only end the turn on it. On loopback both are a few
  ms: the device saves the end marker's encoding, sending and decoding before the turn can end.
- `turn_end.speech_end_to_commit_ms (openai, quiet room)`: from the end of the speech to the end of the turn,
  with digital silence between the words (a room the server's VAD hears as silent): the server's VAD then
  ends the turn 500 ms after the speech, inside the gate's 700 ms hangover; the device ends it when the
  hangover has run out. Reported, no goal: the price of the gate being the only judge of a turn's end.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from bench.common import Row
from tests import audiogen as ag
from tests.fakes.base import Turn
from tests.fakes.openai import FakeOpenAIRealtime
from tests.test_end_of_turn import TurnRig

SAYS = (
    ag.Say("What time is it?"),
    ag.Say("Turn the kitchen light off.", "en-gb+f3"),
    ag.Say("What is the date today?", "en-us+m3"),
    ag.Say("Set a timer for ten minutes.", "en-gb-scotland+f2"),
    ag.Say("How warm is it outside?", "en-us"),
    ag.Say("Play some music.", "en-gb+f3"),
    ag.Say("Who am I?", "en-us+m3"),
    ag.Say("Thank you.", "en-gb-scotland+f2"),
)
GAP_S = 2.0  # from one utterance's end to the next one's start: its answer (instant here) fits in between
FRAME_SAMPLES = 480  # a 30 ms frame at 16 kHz


def _speech(n: int, noise: str | None) -> tuple[list[bytes], list[float]]:
    """`n` utterances as 30 ms frames, and where each one's speech ends (seconds into the input)."""
    says = [ag.Say(s.text, s.voice, gap_s=GAP_S) for s in SAYS[:n]]
    scene = ag.sequence(says, noise, 30.0, lead_s=1.0, tail_s=1.5)
    return ag.frames(scene.s16(), 30), [end for _, end in scene.spans]


def _measure(frames: list[bytes], n: int, *, commit: bool) -> TurnRig:
    fake = FakeOpenAIRealtime([Turn(user=f"u{i}", assistant=f"a{i}", audio_chunks=2, silence_ms=500) for i in range(n)])
    fake.start()
    try:
        rig = TurnRig(fake, commit=commit)
        asyncio.run(asyncio.wait_for(rig.talk(frames, answers=n, pace=1.0), 120))
    finally:
        fake.stop()
    kinds = {kind for _, kind in fake.ends}
    if len(fake.ends) != n or kinds != {"commit" if commit else "vad"} or rig.mic.turns_ended != n:
        raise RuntimeError(f"turn_end: {n} turns expected, the gate ended {rig.mic.turns_ended}, the fake {fake.ends}")
    return rig


def _from_speech_end(rig: TurnRig, ends_s: list[float]) -> list[float]:
    """ms from when each utterance's last speech frame went to the mic to the fake's end of its turn."""
    spoken = [rig.fed_at[min(len(rig.fed_at) - 1, int(end * 16000) // FRAME_SAMPLES)] for end in ends_s]
    return [(t - s) * 1000 for s, (t, _) in zip(spoken, rig.fake.ends, strict=True)]


def _rows(quick: bool) -> Iterator[Row]:
    n = 3 if quick else len(SAYS)
    frames, _ = _speech(n, "pink")
    ours = statistics.median(_measure(frames, n, commit=True).commit_delays_ms())
    vad = statistics.median(_measure(frames, n, commit=False).commit_delays_ms())
    yield Row("turn_end.commit_ms (openai)", ours, "ms", vad, "ratio <= 1.0")

    frames, ends = _speech(n, None)
    ours = statistics.median(_from_speech_end(_measure(frames, n, commit=True), ends))
    vad = statistics.median(_from_speech_end(_measure(frames, n, commit=False), ends))
    yield Row("turn_end.speech_end_to_commit_ms (openai, quiet room)", ours, "ms", vad)


def rows(quick: bool) -> Iterable[Row]:
    yield from _rows(quick)


def _main(argv: list[str]) -> Any:  # `python -m bench.rows_turn_end [--quick]` prints the rows
    for r in rows(quick="--quick" in argv):
        print(r.as_json(), flush=True)


if __name__ == "__main__":
    _main(sys.argv)
