"""`edgevoice gate FILE` end to end through the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgevoice.config import parse
from edgevoice.gate.scan import AudioFileError, read_audio, scan_file
from tests import audiogen as ag

EDGEVOICE = str(Path(sys.executable).parent / "edgevoice")
UTTERANCES = [(ag.HELD_OUT_SENTENCES[i], ag.VOICES[i]) for i in (0, 2, 4)]


@pytest.fixture(scope="session")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[ag.Scene, Path, Path]:
    """Three utterances in pink noise at 20 dB, as a 44.1 kHz stereo WAV and as a 16 kHz .raw."""
    d = tmp_path_factory.mktemp("gate_cli")
    scene = ag.scene(UTTERANCES, "pink", 20, seed=11)
    wav = ag.write_wav(d / "three.wav", scene.audio, rate=44100, channels=2)
    raw = d / "three.raw"
    raw.write_bytes(scene.s16())
    return scene, wav, raw


@pytest.fixture(scope="session")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("gate_cfg") / "edgevoice.toml"
    p.write_text('[gate]\njudge_backend = "onnx"\n')
    return p


def edgevoice(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EDGEVOICE, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("which", ["wav", "raw"])
def test_json_lines_one_per_utterance(which: str, recording: tuple[ag.Scene, Path, Path], config_file: Path) -> None:
    scene, wav, raw = recording
    r = edgevoice("gate", str(wav if which == "wav" else raw), "--config", str(config_file), "--json")
    assert r.returncode == 0, r.stderr
    turns = [json.loads(line) for line in r.stdout.splitlines()]
    assert [set(t) for t in turns] == [{"start_s", "end_s"}] * 3
    for t, (on, off) in zip(turns, scene.spans, strict=True):
        assert t["start_s"] <= on + 0.050
        assert off <= t["end_s"] <= off + 0.7 + 0.03 + 0.001  # + rounding to ms
        assert t["start_s"] == round(t["start_s"], 3)


def test_readable_output(recording: tuple[ag.Scene, Path, Path], config_file: Path) -> None:
    _, wav, _ = recording
    r = edgevoice("gate", str(wav), "--config", str(config_file))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith(f"turn {i}:") for i, line in enumerate(lines, 1))


@pytest.mark.parametrize("kind", ["missing", "garbage"])
def test_bad_file_exits_2_with_one_line_naming_it(kind: str, tmp_path: Path, config_file: Path) -> None:
    path = tmp_path / f"{kind}.wav"
    if kind == "garbage":
        path.write_bytes(b"this is not a RIFF file at all" * 10)
    r = edgevoice("gate", str(path), "--config", str(config_file), "--json")
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and str(path) in r.stderr


def test_wav_is_mixed_and_resampled_like_the_raw(recording: tuple[ag.Scene, Path, Path]) -> None:
    _, wav, raw = recording
    settings = parse('[gate]\njudge_backend = "onnx"\n')
    a, b = scan_file(wav, settings), scan_file(raw, settings)
    assert len(a) == len(b) == 3
    for x, y in zip(a, b, strict=True):
        assert abs(x.start_s - y.start_s) <= 0.03 and abs(x.end_s - y.end_s) <= 0.03


def test_read_audio_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match=r"nothere\.wav"):
        read_audio(tmp_path / "nothere.wav")


@pytest.mark.parametrize("kind", ["truncated", "empty_wav", "empty_raw", "directory", "header_only_riff"])
def test_unreadable_file_says_why(kind: str, tmp_path: Path, recording: tuple[ag.Scene, Path, Path]) -> None:
    """Never "cannot read audio ()": wave's EOFError has no message of its own."""
    _, wav, _ = recording
    path = tmp_path / ("x.raw" if kind == "empty_raw" else "x.wav")
    if kind == "truncated":
        path.write_bytes(wav.read_bytes()[:20])
    elif kind in ("empty_wav", "empty_raw"):
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt ")
    r = edgevoice("gate", str(path), "--json")
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], r.stderr
    assert "()" not in lines[0] and lines[0].rstrip().endswith(")"), lines[0]


def reference_audio(path: Path) -> bytes:
    """What `edgevoice gate` read before it streamed: the whole file, mixed, resampled at once."""
    import wave

    import numpy as np
    import soxr

    with wave.open(str(path), "rb") as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    assert width in (2, 3)
    if width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float64) / 32768.0
    else:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float64) / float(1 << 23)
    y = soxr.resample(x.reshape(-1, channels).mean(axis=1), rate, 16000)
    return bytes(np.clip(np.round(y * 32768.0), -32768, 32767).astype("<i2").tobytes())


@pytest.mark.parametrize("width", [16, 24])
def test_streamed_read_equals_the_whole_file_read(
    width: int, tmp_path: Path, recording: tuple[ag.Scene, Path, Path]
) -> None:
    _, wav, _ = recording
    if width == 24:
        src, wav = wav, tmp_path / "three24.wav"
        subprocess.run(["sox", str(src), "-b", "24", str(wav), "rate", "-v", "48000"], check=True)
    assert read_audio(wav) == reference_audio(wav)


def peak_rss_mb(*args: str) -> float:
    """Peak RSS of `edgevoice ARGS`, measured in a wrapper whose only child it is."""
    probe = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
        "assert r.returncode == 0, r.stderr\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, EDGEVOICE, *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return int(out.stdout) / 1024


def test_memory_does_not_grow_with_the_recording(tmp_path: Path) -> None:
    """Ten minutes of 44.1 kHz stereo (106 MB) need no more memory than ten seconds: the file streams."""
    short, long = tmp_path / "short.wav", tmp_path / "long.wav"
    for path, seconds in ((short, 10), (long, 600)):
        subprocess.run(
            ["sox", "-n", "-r", "44100", "-c", "2", "-b", "16", str(path), "synth", str(seconds), "pinknoise",
             "vol", "0.05"],
            check=True,
        )  # fmt: skip
    base = peak_rss_mb("gate", str(short), "--json")
    big = peak_rss_mb("gate", str(long), "--json")
    assert big <= base + 20, (base, big)
