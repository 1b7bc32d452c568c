"""Offline speech-to-text: real pocketsphinx on real espeak-ng speech."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from edgevoice.models import stt, vocabulary
from edgevoice.models.responder import normalize, respond
from tests.audiogen import speak, to_s16

VOICES = ("en-us", "en-us+m3")
DEMO = ("My name is Alice.", "What is my name?")
# At least one phrase per grammar rule.
COMMANDS = (
    "What time is it?",
    "What is the date?",
    "What day is it?",
    "What did I say before?",
    "What did I say earlier?",
    "Who am I?",
    "Call me Max.",
    "Hello.",
    "Good morning.",
    "Thank you.",
    "Stop.",
    "Be quiet.",
    "How are you?",
    "Tell me a joke.",
    "Goodbye.",
    "What can you do?",
    "Say that again.",
    "Yes.",
    "No.",
)
NOW = datetime(2025, 11, 25, 15, 7)


@pytest.fixture(scope="module")
def recogniser() -> stt.SpeechToText:
    return stt.shared()


def hear(r: stt.SpeechToText, text: str, voice: str) -> str:
    return stt.tidy(r.transcribe(to_s16(speak(text, voice))))


@pytest.mark.parametrize("wpm", [165, 175])  # the local model's rate, and espeak-ng's default (the demo's)
@pytest.mark.parametrize("voice", [*VOICES, "en-us+f2"])
@pytest.mark.parametrize("phrase", DEMO)
def test_demo_phrases_exactly(recogniser: stt.SpeechToText, phrase: str, voice: str, wpm: int) -> None:
    assert stt.tidy(recogniser.transcribe(to_s16(speak(phrase, voice, wpm)))) == phrase


def test_command_and_name_accuracy(recogniser: stt.SpeechToText, capsys: pytest.CaptureFixture[str]) -> None:
    """Prints word-exact and same-answer rates; the floors sit below what bench/rows_local.py measures."""
    names = random.Random(7).sample(sorted(vocabulary.names()), 20)
    rows = []
    for voice in VOICES:
        intros = tuple(f"My name is {n.title()}." for n in names)
        for kind, phrases in (("command", COMMANDS), ("name", intros)):
            n_exact = n_same = 0
            misses = []
            for phrase in phrases:
                heard = hear(recogniser, phrase, voice)
                n_exact += normalize(heard) == normalize(phrase)
                n_same += respond([], heard, NOW) == respond([], phrase, NOW)
                if normalize(heard) != normalize(phrase):
                    misses.append(f"{phrase} -> {heard or '(nothing)'}")
            rows.append((voice, kind, n_exact / len(phrases), n_same / len(phrases), misses))
    with capsys.disabled():
        print()
        for voice, kind, exact, same, misses in rows:
            missed = "; ".join(misses)
            print(f"  stt {voice:9} {kind:8} exact {exact:4.0%}  same answer {same:4.0%}  misses: {missed}")
    for _voice, kind, _exact, same, _ in rows:
        assert same >= (0.85 if kind == "command" else 0.6)


def test_silence_and_noise_are_not_words(recogniser: stt.SpeechToText) -> None:
    assert recogniser.transcribe(b"") == ""
    assert recogniser.transcribe(bytes(16000 * 2)) == ""
    noise = np.random.default_rng(0).normal(0, 1000, 16000).astype("<i2").tobytes()
    assert recogniser.transcribe(noise) == ""


def test_decoder_is_shared_and_loaded_once(recogniser: stt.SpeechToText) -> None:
    recogniser.load()
    decoder = recogniser._decoder
    assert decoder is not None
    recogniser.load()
    assert stt.shared() is recogniser
    assert recogniser._decoder is decoder


def test_every_grammar_word_has_a_pronunciation() -> None:
    from pocketsphinx import get_model_path

    path = Path(get_model_path()) / "en-us" / "cmudict-en-us.dict"
    words = vocabulary.grammar_words(vocabulary.grammar())
    assert {"alice", "what", "name", "today's"} <= words
    assert vocabulary.names() <= words
    trimmed = stt.trim_dictionary(path, words)
    assert {line.split()[0].split("(")[0] for line in trimmed.splitlines()} == words
    with pytest.raises(ValueError, match=r"missing from cmudict-en-us\.dict: zzyzxq"):
        stt.trim_dictionary(path, {"alice", "zzyzxq"})


def test_names_list() -> None:
    names = vocabulary.names()
    assert 300 <= len(names) <= 500
    assert all(n == n.lower() and n.isalpha() for n in names)
    assert {"alice", "bob", "olivia"} <= names


def test_grammar_words_ignore_comments_rules_and_keywords() -> None:
    jsgf = "#JSGF V1.0;\n// call me ishmael\ngrammar g;\npublic <a> = hello <b> | [good] bye;\n<b> = there;"
    assert vocabulary.grammar_words(jsgf) == {"hello", "good", "bye", "there"}


@pytest.mark.parametrize(
    ("words", "sentence"),
    [
        ("my name is alice", "My name is Alice."),
        ("what is my name", "What is my name?"),
        ("i'm sophia", "I'm Sophia."),
        ("who am i", "Who am I?"),
        ("stop", "Stop."),
        ("", ""),
    ],
)
def test_tidy(words: str, sentence: str) -> None:
    assert stt.tidy(words) == sentence


def test_prepare_pads_and_is_deterministic() -> None:
    x = np.full(1600, 5000, dtype="<i2")
    y = stt.prepare(x)
    assert len(y) == 1600 + 2 * int(stt.RATE * 0.3)
    assert np.array_equal(y, stt.prepare(x))
    assert 0 < np.abs(y[:4800]).max() < 200  # a faint floor under the padding, not silence
