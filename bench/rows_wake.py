"""gate.mode = "wake_word" (okay_nabu through pymicro-wakeword): CPU, memory, false accepts, commands caught.

- CPU: the whole gate in wake_word mode (detector on every frame, webrtcvad, the foreground stage, Silero in
  turns) per second of audio, least of a few runs, over other people's speech in pink noise 10 dB down with
  two "okay nabu, <command>" in it; anchor: the vad-mode gate over the same frames.
- RSS: what importing pymicro_wakeword, loading the model and running it over 1 s of audio adds to a fresh
  interpreter that has imported numpy and edgevoice.gate (VmHWM, median of 3); anchor: what
  `import strands.bidi`, which every daemon carries, adds to the same baseline. A wake_word daemon's idle RSS
  sits that much higher than the vad daemon's (bench/rows_daemon.py measures vad mode only).
- False accepts per hour: every sentence of the suite's sets (none holds the wake word) in ten espeak-ng
  voices at 140-190 words a minute, clean, then again in pink noise 10 dB down, then two minutes of
  four-talker babble (33 minutes in all; `--quick` 7); anchor: the turns the vad-mode gate opens
  on the same audio, which the wake word keeps from the model.
- Commands caught: "okay nabu, <command>" as one espeak-ng sentence (a 150 ms pause at the comma) in six
  voices okay_nabu hears, the 12 commands of tests/gatemat.py's held-out set (the tests use others), noise
  seeds of their own. Caught: exactly one turn, ended by silence, from no later than the command's first
  sound to no earlier than its last. In noise the model misses some wake words: those rows have no goal,
  and `commands_kept_when_woken` asks the gate to keep every command whose wake word was heard.
- Without goals: the share of the suite's 18 espeak-ng voices whose "okay nabu" alone is heard (the female
  variants are not), and of confusable phrases ("OK, no.", "Okay, then."...) in four voices that open a turn.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from bench.common import Row, best_cpu, child_json
from edgevoice.config import GateSettings
from edgevoice.gate import Gate, SpeechJudge, TurnEnded, TurnStarted, WakeDetector, make_judge
from edgevoice.gate.scan import scan
from edgevoice.gate.wake import load_detector
from edgevoice.pcm import RATE
from tests import audiogen as ag
from tests import gatemat as gm

WAKE = GateSettings(mode="wake_word")
VAD = GateSettings()
HEARD_VOICES = ("en-us", "en-gb+f3", "en-us+m3", "en-029+m1", "en-gb-x-rp", "en+m3")
CONFUSABLE = (
    "OK, no.",
    "Okay, then.",
    "Okay, now book a table.",
    "Okay Nadia, you win.",
    "Okay Google, what's the weather?",
    "I saw a nabob in the bar.",
    "A new boot for the car.",
    "Oh, Kay knows about it.",
    "Hey Siri, set a timer.",
    "Alexander the Great.",
    "The label says nothing.",
    "Cannabis is legal there now.",
)

# A fresh interpreter: argv = kind (wake|strands), raw 16 kHz S16_LE path. VmHWM, as in rows_silero.py.
_CHILD = r"""
import numpy
import edgevoice.gate
kind, audio = sys.argv[1], open(sys.argv[2], "rb").read()
base = hwm_kb()
t0 = time.perf_counter()
if kind == "wake":
    from edgevoice.gate.wake import load_detector
    detector = load_detector("okay_nabu")
    load = time.perf_counter() - t0
    for i in range(0, len(audio) - 959, 960):
        detector(audio[i : i + 960])
else:
    import strands.bidi
    load = time.perf_counter() - t0
print(json.dumps({"load_s": load, "rss_kb": hwm_kb() - base}))
"""


def _wake_gate(judge: SpeechJudge, detector: WakeDetector) -> Gate:
    return Gate(WAKE, judge, 30, WAKE.foreground_db, detector)


def _level(x: np.ndarray) -> np.ndarray:
    return x * (ag.LEVEL / ag.speech_level(x))


def _other_speech(voices: tuple[str, ...], seed: int) -> np.ndarray:
    """Every sentence of the suite's sets in each of `voices`, at 140-190 words a minute, 0.3-1 s apart."""
    rng = np.random.default_rng(seed)
    sentences = ag.TUNING_SENTENCES + ag.HELD_OUT_SENTENCES + ag.BABBLE_SENTENCES
    sentences += gm.TUNE.sentences + gm.HELD_OUT.sentences
    parts = []
    for voice in voices:
        for s in sentences:
            parts += [
                _level(ag.speak(s, voice, int(rng.integers(140, 191)))),
                np.zeros(int(rng.uniform(0.3, 1.0) * RATE)),
            ]
    return np.concatenate(parts)


def _one_breath(voice: str, command: str, snr: float | None, seed: int) -> tuple[ag.Scene, int, int]:
    """The scene, the command's first and last sample (see tests/test_wake.py: the first clause is sample
    for sample "okay nabu," said alone)."""
    text = f"okay nabu, {command[0].lower()}{command[1:]}"
    word = ag.speak("okay nabu,", voice)
    full = ag.speak(text, voice)
    scene = ag.sequence([ag.Say(text, voice)], "pink" if snr else None, snr or 0, 2.5, 2.0, seed)
    on, off = (round(t * RATE) for t in scene.spans[0])
    return scene, on + len(word) + ag.active_span(full[len(word) :])[0], off


def _caught(judge: SpeechJudge, detector: WakeDetector, scene: ag.Scene, onset: int, offset: int) -> tuple[bool, bool]:
    """(the wake word was heard, the command was caught)."""
    gate = _wake_gate(judge, detector)
    events = [e for f in ag.frames(scene.s16()) for e in gate.process(f)]
    starts = [e for e in events if isinstance(e, TurnStarted)]
    ends = [e for e in events if isinstance(e, TurnEnded)]
    caught = (
        len(starts) == 1
        and len(ends) == 1
        and ends[0].reason == "silence"
        and starts[0].start_sample <= onset
        and ends[0].end_sample >= offset
    )
    return bool(starts), caught


def rows(quick: bool) -> Iterable[Row]:
    return list(_rows(quick))


def _rows(quick: bool) -> Iterator[Row]:
    judge = make_judge(WAKE)
    assert judge is not None
    detector = load_detector("okay_nabu")

    # CPU: other talk in noise, two commands in it.
    talk = _other_speech(("en-gb-x-rp",) if quick else ("en-gb-x-rp", "en-us+m6"), seed=61)[
        : (30 if quick else 90) * RATE
    ]
    commands = [
        _one_breath(v, c, None, 0)[0].audio for v, c in (("en-us", "Open the garage door."), ("en+m3", "Stop."))
    ]
    x = np.concatenate([talk[: len(talk) // 2], commands[0], talk[len(talk) // 2 :], commands[1]])
    x = x + ag.LEVEL * 10 ** (-10 / 20) * ag.pink_noise(len(x), 62)
    data = ag.to_s16(x)
    seconds = len(x) / RATE
    repeat = 3 if quick else 5
    turns: list[int] = []
    wake_s = best_cpu(lambda: turns.append(len(scan(_wake_gate(judge, detector), data))), repeat)
    vad_s = best_cpu(lambda: scan(Gate(VAD, judge), data), repeat)
    assert set(turns) == {2}, f"the CPU scene should hold two wake-word turns, got {turns}"
    yield Row(
        "wake.cpu_ms_per_s (gate, talk + 2 commands, pink 10 dB)",
        wake_s / seconds * 1000,
        "ms/s",
        vad_s / seconds * 1000,
        "value <= 5",
    )

    # Memory, in fresh interpreters: the median (it barely moves).
    with tempfile.TemporaryDirectory(prefix="bench-wake-") as tmp:
        audio = Path(tmp) / "1s.raw"
        audio.write_bytes(data[: 2 * RATE])
        n = 1 if quick else 3
        runs = {k: [child_json(_CHILD, k, str(audio), timeout=120) for _ in range(n)] for k in ("wake", "strands")}
    rss = {k: float(np.median([r["rss_kb"] for r in v])) / 1024 for k, v in runs.items()}
    load = {k: min(r["load_s"] for r in v) * 1000 for k, v in runs.items()}
    yield Row("wake.rss_added_mib (import + load + 1 s)", rss["wake"], "MiB", rss["strands"], "ratio <= 0.15")
    yield Row("wake.import_load_ms", load["wake"], "ms", load["strands"])

    # False accepts: other speech, clean and in noise, then babble.
    voices = (ag.VOICES + ag.BABBLE_VOICES)[: 2 if quick else 10]
    talk = _other_speech(voices, seed=63)
    babble = ag.LEVEL * ag.babble((30 if quick else 120) * RATE, seed=64)
    x = np.concatenate([talk, talk + ag.LEVEL * 10 ** (-10 / 20) * ag.pink_noise(len(talk), 65), babble])
    data = ag.to_s16(x)
    hours = len(x) / RATE / 3600
    accepts = len(scan(_wake_gate(judge, detector), data))
    vad_turns = len(scan(Gate(VAD, judge), data))
    yield Row(
        "wake.false_accepts_per_h (other speech, clean/pink 10 dB/babble)",
        accepts / hours,
        "per h",
        vad_turns / hours,
        "value == 0",
    )

    # Commands caught: every one in the clean; in noise the model misses some wake words (no goal), and of
    # those it hears the gate must keep every command.
    voices = HEARD_VOICES[:4] if quick else HEARD_VOICES
    cmds = gm.HELD_OUT.sentences[::3] if quick else gm.HELD_OUT.sentences
    heard = kept = 0
    for label, snr in (("clean", None), ("pink 10 dB", 10), ("pink 5 dB", 5)):
        ok = total = 0
        for i, voice in enumerate(voices):
            for k, command in enumerate(cmds):
                scene, onset, offset = _one_breath(voice, command, snr, seed=400 + 20 * i + k)
                woke, caught = _caught(judge, detector, scene, onset, offset)
                heard += woke
                kept += caught
                ok += caught
                total += 1
        goal = "value == 1" if snr is None else ""
        yield Row(f"wake.commands_caught (heard voices, {label})", ok / total, "share", None, goal)
    yield Row("wake.commands_kept_when_woken (clean, pink 10 and 5 dB)", kept / heard, "share", None, "value == 1")

    # Without goals: which voices the model hears at all, and confusable phrases.
    all_voices = tuple(dict.fromkeys(ag.VOICES + ag.BABBLE_VOICES + gm.TUNE.voices + gm.HELD_OUT.voices))
    detected = 0
    for voice in all_voices:
        x = np.concatenate([np.zeros(int(2.5 * RATE)), _level(ag.speak("okay nabu", voice)), np.zeros(RATE * 5)])
        detected += bool(scan(_wake_gate(judge, detector), ag.to_s16(x)))
    yield Row(
        f"wake.detected (okay nabu alone, {len(all_voices)} espeak-ng voices)", detected / len(all_voices), "share"
    )
    opened = total = 0
    for phrase in CONFUSABLE[:4] if quick else CONFUSABLE:
        for voice in HEARD_VOICES[:4]:
            x = np.concatenate([np.zeros(int(2.5 * RATE)), _level(ag.speak(phrase, voice)), np.zeros(RATE * 5)])
            opened += bool(scan(_wake_gate(judge, detector), ag.to_s16(x)))
            total += 1
    yield Row("wake.confusables_accepted (OK no, okay then..., 4 voices)", opened / total, "share")
