"""The wake-word detector behind `gate.mode = "wake_word"`: microWakeWord models through pymicro-wakeword.

Imported by `make_gate` in wake_word mode only, and pymicro_wakeword only when a detector is built: its
TFLite runtime adds about 4-5 MiB of RSS (bench/rows_wake.py) that the other modes must not pay (the
daemon's idle RSS is benchmarked in vad mode).

What pymicro-wakeword 2.5 does, read from its source: a C frontend turns each 10 ms of 16 kHz audio into
40 features (30 ms windows); every `stride` (3) features the quantized streaming model runs once, and the
mean of the last `sliding_window_size` (5) outputs is compared with the model's `probability_cutoff`
(0.85-0.97, from the model's JSON). `process_streaming_prob` returns 0.0 on the two steps of every three
where the model does not run, and the mean on the third: one saying of the word stays over the cutoff for a
dozen runs, so `MicroWakeDetector` looks only at the runs and fires on the crossing. Its `reset()` reloads
the model file (the model's streaming buffers live in the TFLite state).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import WAKE_WORDS, ConfigError
from ..pcm import ms_samples

if TYPE_CHECKING:
    from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures

# How far back from the end of the frame the detector fires in the turn may start. On espeak-ng voices
# (clean, 10 and 5 dB pink noise, commands 50-500 ms after the word) okay_nabu fired 130-410 ms after the
# word's last sound (median 200), alexa 230-440 ms (hey_mycroft from 40 ms before it): five outputs 30 ms
# apart must average over the cutoff. A command said in one breath has begun by then. Chosen: the wake word
# is not sent when a pause shows where it ended (`gate._frames_before_pause`), else the turn starts this far
# back, which may send the word's last 300 ms. A model that hears "okay nabu" may answer it and the stored
# transcript carries it, so the word is better left out; but a clipped command is worse than a stray
# syllable ("...bu, stop" is still understood, "op" is not), and 450 ms keeps even the slowest detection
# seen from clipping a command said without a pause.
LOOKBACK_MS = 450


class WakeWordUnavailable(ConfigError):
    """The wake-word detector cannot run here; the message is one line naming the key."""


class MicroWakeDetector:
    """One built-in microWakeWord model, fed frame by frame (any whole number of 10 ms steps per frame
    is fine; a partial step waits for the next frame). Satisfies `gate.WakeDetector`."""

    lookback_samples = ms_samples(LOOKBACK_MS)

    def __init__(self, model: MicroWakeWord, features: MicroWakeWordFeatures) -> None:
        self.model = model
        self.cutoff = model.probability_cutoff
        self._features = features
        self._stride = max(1, model.stride)
        self._step = 0  # features fed since the model last ran
        self._above = False  # the mean probability was over the cutoff when the model last ran
        self.probability = 0.0
        """The latest mean probability (for tuning and the tests)."""

    def reset(self) -> None:
        self.model.reset()
        self._features.reset()
        self._step = 0
        self._above = False
        self.probability = 0.0

    def __call__(self, frame: bytes) -> bool:
        fired = False
        for features in self._features.process_streaming(frame):
            p = self.model.process_streaming_prob(features)
            self._step += 1
            if self._step < self._stride or p is None:  # 0.0 while it gathers a stride; None: closed
                continue
            self._step = 0
            self.probability = p
            above = p > self.cutoff  # the library's own test (`process_streaming`)
            fired |= above and not self._above
            self._above = above
        return fired


def load_detector(name: str) -> MicroWakeDetector:
    """The built-in model `name` (one of config.WAKE_WORDS), loaded; WakeWordUnavailable if it cannot be."""
    if name not in WAKE_WORDS:
        raise WakeWordUnavailable(f"config: gate.wake_word must be one of {', '.join(WAKE_WORDS)} (got {name!r})")
    try:
        from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model

        model = MicroWakeWord.from_builtin(Model(name))
        features = MicroWakeWordFeatures()
    except Exception as e:  # ImportError, OSError from the TFLite library (glibc too old), a missing model
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise WakeWordUnavailable(f"config: gate.wake_word = {name!r} cannot run here ({first})") from None
    return MicroWakeDetector(model, features)
