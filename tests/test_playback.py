"""Playback through real alsa-lib into `file` PCMs defined in a per-test ~/.asoundrc."""

from __future__ import annotations

import asyncio
import logging
import time
import wave
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from edgevoice.audio import Playback
from tests.alsa import AsoundRc, alsa_home, killable_sink

RATE = 16000
BPS = RATE * 2  # bytes per second at 16 kHz mono S16_LE


@pytest.fixture
def asound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AsoundRc]:
    yield from alsa_home(tmp_path, monkeypatch)


def run(coro: Coroutine[Any, Any, None], timeout: float = 30.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


async def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.005)


def noise(seconds: float, rate: int = RATE, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return rng.integers(-8000, 8000, int(seconds * rate), dtype=np.int16).astype("<i2").tobytes()


def sine(freq: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.round(12000 * np.sin(2 * np.pi * freq * t)).astype("<i2")


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def records(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level and text in r.getMessage()]


class Events:
    """on_start/on_idle as seen on the loop."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.idle = asyncio.Event()

    def start(self) -> None:
        self.log.append("start")
        self.idle.clear()

    def end(self) -> None:
        self.log.append("idle")
        self.idle.set()


def test_raw_file_holds_exactly_the_audio_played(asound: AsoundRc, tmp_path: Path) -> None:
    out = tmp_path / "out.raw"
    asound.playback("spk", out).write()
    data = noise(1.0)

    async def body() -> None:
        ev = Events()
        pb = Playback("spk", pace=False, on_start=ev.start, on_idle=ev.end)
        pb.start()
        for i in range(0, len(data), 1234):  # pieces that are no multiple of a period
            pb.play(data[i : i + 1234], RATE)
        assert pb.is_playing
        await asyncio.wait_for(pb.wait_idle(), 5)
        await asyncio.wait_for(ev.idle.wait(), 5)
        assert not pb.is_playing
        pb.stop()
        assert out.read_bytes() == data
        assert ev.log == ["start", "idle"]

    run(body())


def test_wav_file_and_a_second_stretch(asound: AsoundRc, tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    asound.playback("spk", out, fmt="wav").write()
    a, b = noise(0.5, seed=1), noise(0.3, seed=2)

    async def body() -> None:
        ev = Events()
        pb = Playback("spk", pace=False, on_start=ev.start, on_idle=ev.end)
        pb.start()
        pb.play(a, RATE)
        await pb.wait_idle()
        pb.play(b, RATE)
        await pb.wait_idle()
        await asyncio.wait_for(ev.idle.wait(), 5)
        pb.stop()  # closing the PCM makes alsa-lib fix up the WAV header
        assert ev.log == ["start", "idle", "start", "idle"]

    run(body())
    with wave.open(str(out), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
        assert w.readframes(w.getnframes()) == a + b


def test_24k_audio_is_resampled_to_the_16k_device(asound: AsoundRc, tmp_path: Path) -> None:
    out = tmp_path / "out.raw"
    asound.playback("spk", out).write()
    x = sine(440, 1.0, 24000)

    async def body() -> None:
        pb = Playback("spk", rate=RATE, pace=False)
        pb.start()
        for i in range(0, len(x), 480):  # 20 ms pieces, as a model streams them
            pb.play(x[i : i + 480].tobytes(), 24000)
        await asyncio.wait_for(pb.wait_idle(), 5)
        pb.stop()

    run(body())
    y = np.frombuffer(out.read_bytes(), "<i2")
    ref = np.rint(soxr.resample(x.astype(np.float32) / 32768, 24000, RATE) * 32768)
    assert len(y) == len(ref) == RATE
    assert float(np.abs(y - ref).max()) <= 1
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert np.argmax(spec) * RATE / len(y) == pytest.approx(440, abs=2)


def test_file_pcm_is_detected_as_unpaced_and_paced_to_real_time(asound: AsoundRc, tmp_path: Path) -> None:
    out = tmp_path / "out.raw"
    asound.playback("spk", out).write()
    data = noise(0.6)

    async def body() -> None:
        pb = Playback("spk")  # pace=None: decided at the first write
        pb.start()
        t0 = time.monotonic()
        pb.play(data, RATE)
        await asyncio.wait_for(pb.wait_idle(), 5)
        elapsed = time.monotonic() - t0
        pb.stop()
        assert pb.paced is True  # alsa-lib's null PCM swallows audio instantly
        assert elapsed >= 0.6 - 0.03  # the first period goes out before pacing is decided
        assert out.read_bytes() == data

    run(body())


def test_flush_is_barge_in(asound: AsoundRc, tmp_path: Path) -> None:
    out = tmp_path / "out.raw"
    asound.playback("spk", out).write()
    data = noise(5.0)
    after = noise(0.3, seed=7)

    async def body() -> None:
        ev = Events()
        pb = Playback("spk", pace=True, on_start=ev.start, on_idle=ev.end)
        pb.start()
        t_play = time.monotonic()
        pb.play(data, RATE)
        await until(lambda: size(out) >= BPS)  # the file lags by one ALSA buffer: about 1.1 s in
        dropped = pb.flush()
        t_flush = time.monotonic()
        assert not pb.is_playing
        await asyncio.wait_for(ev.idle.wait(), 1)
        written = size(out)  # the writer's drop() put alsa-lib's buffered part in the file
        period = pb.period_frames * 2
        ahead = (pb.buffer_frames * 2) + period  # at most one ALSA buffer and one period ahead
        assert written <= (t_flush - t_play) * BPS + ahead
        assert written >= (t_flush - t_play - 0.25) * BPS  # and paced, not far behind either
        assert written % 2 == 0 and out.read_bytes() == data[:written]
        assert len(data) - period <= written + dropped <= len(data)  # a taken chunk may be discarded
        await asyncio.sleep(4 * pb.period_frames / RATE)
        assert size(out) == written  # nothing more after the flush
        assert ev.log == ["start", "idle"]
        pb.play(after, RATE)  # playing again works
        await asyncio.wait_for(pb.wait_idle(), 5)
        await until(lambda: ev.log == ["start", "idle", "start", "idle"])
        pb.stop()
        assert out.read_bytes() == data[:written] + after

    run(body())


def test_missing_device_is_opened_once_it_appears(
    asound: AsoundRc, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice.audio")
    out = tmp_path / "out.raw"
    asound.playback("other", tmp_path / "other.raw").write()  # no "spk" yet: the open fails
    data = noise(0.8)

    async def body() -> None:
        pb = Playback("spk", pace=False)  # the default reopen_max_s (1 s) caps the backoff
        pb.start()
        pb.play(data, RATE)
        await until(lambda: pb.open_failures >= 4)  # about 0.75 s of retries
        assert pb.is_playing and not pb.is_open
        # The device appears, as a replugged USB card would. alsa-lib caches its configuration,
        # so defining the PCM needs a reload (a real card needs none: it is found at open).
        asound.playback("spk", out).write()
        t0 = time.monotonic()
        await asyncio.wait_for(pb.wait_idle(), 2)
        assert time.monotonic() - t0 < 2
        pb.stop()
        assert out.read_bytes() == data

    run(body())
    assert len(records(caplog, logging.WARNING, "unavailable")) == 1
    assert len(records(caplog, logging.INFO, "is back")) == 1


def test_device_that_opens_but_fails_is_logged_once(
    asound: AsoundRc, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice.audio")
    # alsa-lib 1.2.8 ignores a failed open of a file PCM's output file: the PCM opens, takes one
    # ALSA buffer of audio, then every write fails (EBADF -> -EIO). The writer cycles through
    # open, write, fail, and must not log each cycle.
    out = tmp_path / "later" / "out.raw"
    asound.playback("spk", out).write()
    data = noise(2.0)

    async def body() -> None:
        pb = Playback("spk", pace=True, reopen_max_s=0.2)
        pb.start()
        pb.play(data, RATE)
        await until(lambda: pb.open_failures + pb.reopens >= 4)
        out.parent.mkdir()
        await asyncio.wait_for(pb.wait_idle(), 5)
        pb.stop()
        assert data.endswith(out.read_bytes())  # the rest of the queue, in order
        assert size(out) > BPS // 2

    run(body())
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert len(records(caplog, logging.INFO, "is back")) == 1


def test_device_failing_mid_stream_is_reopened(
    asound: AsoundRc, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice.audio")
    sink = killable_sink(tmp_path, out=f'"{tmp_path}/out.$$"')  # each reopen writes a new file
    asound.playback("spk", sink.pipe).write()
    data = noise(1.5, seed=3)

    async def body() -> None:
        pb = Playback("spk", pace=True)
        pb.start()
        pb.play(data, RATE)
        first = sink.pid()
        await until(lambda: size(tmp_path / f"out.{first}") >= BPS // 4)
        sink.kill()  # alsa-lib's next write to the pipe fails: EPIPE, so writei returns -EIO
        second = await asyncio.to_thread(sink.pid)
        await asyncio.wait_for(pb.wait_idle(), 5)
        pb.stop()
        assert pb.reopens == 1
        resumed = (tmp_path / f"out.{second}").read_bytes()
        assert len(resumed) > 0 and data.endswith(resumed)  # the rest of the queue, in order

    run(body())
    assert len(records(caplog, logging.WARNING, "failed")) == 1
    assert len(records(caplog, logging.INFO, "is back")) == 1
