"""Offline text-to-speech through the real espeak-ng."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgevoice.models import tts


def test_parse_wav_of_espeaks_streamed_wav_with_placeholder_sizes() -> None:
    data = subprocess.run(["espeak-ng", "--stdout", "hello"], capture_output=True, check=True).stdout
    assert struct.unpack_from("<I", data, 4)[0] > len(data)  # the RIFF size is a placeholder
    rate, pcm = tts.parse_wav(data)
    assert rate == 22050
    assert len(pcm) % 2 == 0
    assert len(pcm) == len(data) - 44
    assert np.abs(np.frombuffer(pcm, dtype="<i2")).max() > 3000


def test_parse_wav_rejects_what_it_cannot_play() -> None:
    with pytest.raises(tts.SpeechError, match="WAV"):
        tts.parse_wav(b"not a wav at all")
    stereo = b"RIFF\x00\x00\x00\x00WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 2, 16000, 64000, 4, 16)
    with pytest.raises(tts.SpeechError, match="2 ch"):
        tts.parse_wav(stereo + b"data\x00\x00\x00\x00")


@pytest.mark.parametrize("rate", [16000, 22050, 24000, 48000])
def test_synthesize_at_the_output_rate(rate: int) -> None:
    ref = tts.TextToSpeech(rate=22050).synthesize("Nice to meet you, Alice.")
    pcm = tts.TextToSpeech(rate=rate).synthesize("Nice to meet you, Alice.")
    assert len(pcm) / 2 / rate == pytest.approx(len(ref) / 2 / 22050, abs=0.01)
    assert np.abs(np.frombuffer(pcm, dtype="<i2")).max() > 3000


def test_rate_setting_changes_speed() -> None:
    slow = tts.TextToSpeech(words_per_minute=120).synthesize("What time is it?")
    fast = tts.TextToSpeech(words_per_minute=240).synthesize("What time is it?")
    assert len(fast) < 0.7 * len(slow)


def test_text_cannot_be_an_option() -> None:
    pcm = tts.TextToSpeech().synthesize("--version")
    assert len(pcm) > 16000  # spoken, not printed


def test_missing_espeak_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(tts.SpeechError, match="espeak-ng is not installed") as err:
        tts.check_installed()
    assert "\n" not in str(err.value)
    with pytest.raises(tts.SpeechError, match="espeak-ng is not installed"):
        tts.TextToSpeech().synthesize("hello")


def test_bad_voice_is_reported() -> None:
    with pytest.raises(tts.SpeechError, match="espeak-ng failed"):
        tts.TextToSpeech(voice="xx-nonexistent").synthesize("hello")


def test_sentences() -> None:
    assert tts.sentences("Why? Because he was outstanding.  Ha!") == [
        "Why?",
        "Because he was outstanding.",
        "Ha!",
    ]
    assert tts.sentences("It is 3:07 PM.") == ["It is 3:07 PM."]
    assert tts.sentences("  ") == []
