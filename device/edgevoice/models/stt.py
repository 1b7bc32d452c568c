"""Offline speech-to-text: pocketsphinx constrained to the command grammar.

The decoder loads on first use (about 0.1 s and 11 MB with a dictionary trimmed to the grammar's
words, against 0.35 s and 91 MB stock) and is kept; a lock serialises it (a Decoder is not thread-safe).
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..pcm import RATE, quantize, samples
from . import vocabulary

_PAD_S = 0.3
# Digital silence (synthetic speech, the daemon's end marker) upsets pocketsphinx's noise
# removal and cepstral mean: a faint, seeded noise floor 48 dB below the peak fixes that and is
# about as quiet as a real microphone's own noise. On espeak-ng speech (3 US voices) it took names from
# 29% to 76% right and commands from 58% to 100%.
_FLOOR_DB = 48.0
_MIN_PEAK = 300
_QUESTION_WORDS = frozenset({"what", "what's", "who", "how", "do", "where", "when", "why", "can", "is", "are"})


class SpeechToText:
    """Transcribes one utterance of 16 kHz mono S16_LE PCM into lower-case words ("" if nothing)."""

    def __init__(self, jsgf: str | None = None) -> None:
        self._jsgf = jsgf if jsgf is not None else vocabulary.grammar()
        self._decoder: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Build the decoder now rather than on the first utterance."""
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> None:
        if self._decoder is not None:
            return
        from pocketsphinx import Decoder, get_model_path  # lazy: the import alone costs ~40 ms

        model = Path(get_model_path()) / "en-us"
        words = vocabulary.grammar_words(self._jsgf)
        with tempfile.TemporaryDirectory(prefix="edgevoice-stt-") as tmp:
            dict_path = Path(tmp) / "words.dict"
            dict_path.write_text(trim_dictionary(model / "cmudict-en-us.dict", words), encoding="utf-8")
            gram_path = Path(tmp) / "commands.jsgf"
            gram_path.write_text(self._jsgf, encoding="utf-8")
            # bestpath off: the lattice pass returned truncated, off-grammar hypotheses ("what is my").
            self._decoder = Decoder(
                hmm=str(model / "en-us"),
                dict=str(dict_path),
                jsgf=str(gram_path),
                lm=None,
                bestpath=False,
                loglevel="FATAL",
            )

    def transcribe(self, pcm: bytes) -> str:
        raw = samples(pcm)
        if len(raw) < RATE // 10 or int(np.abs(raw.astype(np.int32)).max()) < _MIN_PEAK:
            return ""  # the grammar would force faint noise into some phrase
        padded = prepare(raw)
        with self._lock:
            self._load_locked()
            d = self._decoder
            d.start_utt()
            d.process_raw(padded.tobytes(), full_utt=True)
            d.end_utt()
            hyp = d.hyp()
        return " ".join(hyp.hypstr.split()) if hyp is not None else ""


@functools.cache
def shared() -> SpeechToText:
    """The process-wide recogniser, so reconnecting models reuse one loaded decoder."""
    return SpeechToText()


def prepare(samples: np.ndarray) -> np.ndarray:
    """Pad with silence on both sides and lay a faint, deterministic noise floor under everything."""
    pad = np.zeros(int(RATE * _PAD_S))
    x = np.concatenate([pad, samples.astype(np.float64), pad])
    peak = float(np.abs(samples).max()) if len(samples) else 0.0
    sigma = max(peak, 1000.0) * 10 ** (-_FLOOR_DB / 20)
    x += np.random.default_rng(len(samples)).normal(0.0, sigma, len(x))
    return quantize(x)


def trim_dictionary(path: Path, words: Iterable[str]) -> str:
    """The entries of a pocketsphinx dictionary for `words` (with alternate pronunciations).

    Raises ValueError naming the words the dictionary lacks.
    """
    wanted = set(words)
    found: set[str] = set()
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        base = line.partition(" ")[0].partition("(")[0]  # "word(2) ..." is an alternate pronunciation
        if base in wanted:
            lines.append(line)
            found.add(base)
    missing = wanted - found
    if missing:
        raise ValueError(f"stt: words missing from {os.path.basename(path)}: {', '.join(sorted(missing))}")
    return "\n".join(lines) + "\n"


def tidy(words: str, names: frozenset[str] | None = None) -> str:
    """A recogniser hypothesis as a sentence: "my name is alice" -> "My name is Alice."."""
    if not words:
        return ""
    known = vocabulary.names() if names is None else names
    out = []
    for w in words.split():
        if w in known:
            w = w.capitalize()
        elif w == "i" or w.startswith("i'"):
            w = "I" + w[1:]
        out.append(w)
    text = " ".join(out)
    end = "?" if words.split()[0] in _QUESTION_WORDS else "."
    return text[0].upper() + text[1:] + end
