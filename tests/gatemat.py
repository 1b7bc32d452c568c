"""Material for the follow-up tests: commands in quick succession, short answers, noise that steps.

Two disjoint sets: TUNE (voices, sentences and noise seeds the gate's constants were tried on) and
HELD_OUT (other voices, other sentences, other seeds: what the tests assert on). A sequence is groups
of commands 1-2 s apart (from the end of one to the start of the next) at 130-200 words a minute;
with steps, between groups the noise steps 6 dB down or up halfway through the pause, and the talker
with it, so that every utterance is at the scene's SNR against the noise around it: a command in the
quieter room is then quieter than the background the gate heard before the step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tests import audiogen as ag


@dataclass(frozen=True)
class Material:
    voices: tuple[str, ...]
    sentences: tuple[str, ...]
    seeds: tuple[int, ...]


TUNE = Material(
    voices=("en-us", "en-gb+f3", "en+m3", "en-us+f2", "en-gb-x-rp"),
    sentences=(
        "Turn off the bedroom lights.",
        "Sure.",
        "What's on my calendar today?",
        "Three.",
        "Pause the music.",
        "No.",
        "Set an alarm for half past six.",
        "Okay.",
        "How far away is the moon?",
        "Next song.",
        "Cancel.",
        "Call my brother.",
    ),
    seeds=(101, 102, 103),
)
HELD_OUT = Material(
    voices=("en-gb-scotland+f4", "en-us-nyc+m5", "en-gb-x-gbcwmd+m2", "en-029+f2", "en-us+m6"),
    sentences=(
        "Play something quiet, please.",
        "Seven.",
        "Is it going to rain this afternoon?",
        "Yes.",
        "Open the garage door.",
        "Two.",
        "Read me the news headlines.",
        "Louder.",
        "Add milk to my list.",
        "Thanks.",
        "What song is this?",
        "Fine.",
    ),
    seeds=(201, 202, 203),
)


def says(mat: Material, seed: int, steps: bool, count: int = 12, follow: bool = True) -> list[ag.Say]:
    """`count` commands from `mat`, shuffled by `seed`: gaps 1-2 s, rates 130-200 wpm, groups of 2-4.
    With `steps` the noise alternates between the base level and 6 dB below it from group to group
    (which group starts low depends on the seed: steps down and steps up both occur), and so does the
    talker's level unless `follow` is false (then the quieter groups are 6 dB easier)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(mat.sentences))
    out: list[ag.Say] = []
    low = bool(seed % 2)
    left = int(rng.integers(2, 5))
    for i in range(count):
        if left == 0:
            low = not low
            left = int(rng.integers(2, 5))
        left -= 1
        out.append(
            ag.Say(
                mat.sentences[order[i % len(order)]],
                mat.voices[int(rng.integers(len(mat.voices)))],
                int(rng.integers(130, 201)),
                float(rng.uniform(1.0, 2.0)),
                -6.0 if steps and low else 0.0,
                level_db=-6.0 if steps and low and follow else 0.0,
            )
        )
    return out


def scene(mat: Material, seed: int, kind: str, snr: float, steps: bool) -> ag.Scene:
    return ag.sequence(says(mat, seed, steps), kind, snr, seed=seed)


def stepping_noise(kind: str, seconds: float, snr: float, seed: int, every_s: float = 2.5) -> ag.Scene:
    """Noise alone that steps 6 dB down and back up every `every_s` (the louder level `snr` below LEVEL)."""
    n = int(seconds * ag.RATE)
    k = int(every_s * ag.RATE)
    gain = np.where((np.arange(n) // k) % 2 == 1, 10 ** (-6 / 20), 1.0)
    level = ag.LEVEL * 10 ** (-snr / 20)
    return ag.Scene(level * gain * ag.noise(kind, n, seed), [], ag.LEVEL, level)
