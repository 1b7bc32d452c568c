"""Capture through real alsa-lib: `file` PCMs defined in a per-test ~/.asoundrc."""

from __future__ import annotations

import asyncio
import errno
import logging
import shutil
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import alsaaudio
import numpy as np
import pytest

from edgevoice.audio import Capture, CaptureEnded
from edgevoice.pcm import resample
from tests.alsa import AsoundRc, alsa_home, killable_sink

RATE = 16000


@pytest.fixture
def asound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AsoundRc]:
    yield from alsa_home(tmp_path, monkeypatch)


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """espeak-ng speech, 16 kHz S16_LE mono raw, then 3 s of silence (file PCMs loop stale data at EOF)."""
    d = tmp_path_factory.mktemp("speech")
    wav = d / "speech.wav"
    subprocess.run(
        ["espeak-ng", "-v", "en-us", "-w", str(wav), "Turn on the kitchen lights, please."], check=True
    )
    raw = d / "speech.raw"
    subprocess.run(
        [
            "sox",
            str(wav),
            "-r",
            str(RATE),
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
            str(raw),
            "pad",
            "0",
            "3",
        ],
        check=True,
    )
    return raw


def run(coro: Coroutine[Any, Any, None], timeout: float = 30.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


async def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.01)


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data) - size + 1, size)]


def records(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level and text in r.getMessage()]


@pytest.mark.parametrize("period_ms", [10, 20, 30])
def test_frames_are_the_input_byte_for_byte(asound: AsoundRc, speech: Path, period_ms: int) -> None:
    asound.capture("mic", speech).write()
    data = speech.read_bytes()
    frame_bytes = RATE * period_ms // 1000 * 2
    n = len(data) // frame_bytes - 1  # every frame wholly inside the file

    async def body() -> None:
        cap = Capture("mic", period_ms=period_ms, max_frames=n, queue_frames=n)
        await cap.start()
        frames = [f async for f in cap]
        await cap.stop()
        assert {len(f) for f in frames} == {frame_bytes}
        assert frames == chunks(data, frame_bytes)[:n]
        assert cap.dropped == 0 and cap.overruns == 0 and cap.reopens == 0
        with pytest.raises(CaptureEnded):
            await cap.read()

    run(body())


def test_48k_device_is_resampled_to_16k(asound: AsoundRc, tmp_path: Path) -> None:
    t = np.arange(int(1.5 * 48000)) / 48000
    x = np.round(12000 * np.sin(2 * np.pi * 1000 * t)).astype("<i2").tobytes()
    infile = tmp_path / "sine48k.raw"
    infile.write_bytes(x)
    asound.capture("mic48", infile).write()
    n = 40  # 1.2 s at 16 kHz, inside the 1.5 s input

    async def body() -> None:
        cap = Capture("mic48", rate=48000, period_ms=30, max_frames=n, queue_frames=n)
        await cap.start()
        frames = [f async for f in cap]
        assert len(frames) == n and {len(f) for f in frames} == {960}
        y = np.frombuffer(b"".join(frames), "<i2")
        ref = np.frombuffer(resample(x, 48000, 16000), "<i2")[: len(y)]
        assert int(np.abs(y.astype(np.int32) - ref).max()) <= 1
        spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
        assert np.argmax(spec) * 16000 / len(y) == pytest.approx(1000, abs=5)

    run(body())


def test_full_queue_drops_the_oldest(asound: AsoundRc, speech: Path) -> None:
    asound.capture("mic", speech).write()
    total, keep = 50, 10

    async def body() -> None:
        cap = Capture("mic", queue_frames=keep, max_frames=total)
        await cap.start()
        await until(lambda: cap.ended)  # the consumer has not read a single frame
        assert cap.captured == total
        assert cap.dropped == total - keep
        frames = [f async for f in cap]
        assert frames == chunks(speech.read_bytes(), 960)[total - keep : total]

    run(body())


def test_pace_slows_a_file_pcm_to_n_times_real_time(asound: AsoundRc, speech: Path) -> None:
    asound.capture("mic", speech).write()
    n, pace = 34, 4.0

    async def body() -> None:
        cap = Capture("mic", pace=pace, max_frames=n)
        t0 = time.monotonic()
        await cap.start()
        frames = [f async for f in cap]
        elapsed = time.monotonic() - t0
        assert len(frames) == n
        assert elapsed >= (n - 1) * 0.030 / pace  # the last read is not waited for

    run(body())


class Overrunning:
    """A real alsa-lib PCM whose every 4th read reports an overrun instead of reading.

    A `null`-backed file PCM can never overrun (nothing fills its buffer on its own), so the
    -EPIPE that pyalsaaudio returns after an overrun is injected here; the rest is alsa-lib.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.pcm = alsaaudio.PCM(*args, **kwargs)
        self.calls = 0

    def read(self) -> tuple[int, bytes]:
        self.calls += 1
        if self.calls % 4 == 0:
            return -errno.EPIPE, b""
        n, data = self.pcm.read()
        return n, data

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = self.pcm.info()
        return info

    def close(self) -> None:
        self.pcm.close()


def test_overruns_are_counted_and_the_stream_goes_on(asound: AsoundRc, speech: Path) -> None:
    asound.capture("mic", speech).write()
    n = 20

    async def body() -> None:
        opened: list[Overrunning] = []

        def opener(*args: Any, **kwargs: Any) -> Overrunning:
            opened.append(Overrunning(*args, **kwargs))
            return opened[-1]

        cap = Capture("mic", max_frames=n, queue_frames=n, opener=opener)
        await cap.start()
        frames = [f async for f in cap]
        assert frames == chunks(speech.read_bytes(), 960)[:n]
        assert cap.overruns == opened[0].calls // 4 > 0

    run(body())


def test_missing_device_is_opened_once_it_appears(
    asound: AsoundRc, speech: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice.audio")
    infile = tmp_path / "later.raw"  # absent: alsa-lib's open of the file PCM fails with ENOENT
    asound.capture("mic", infile).write()

    async def body() -> None:
        cap = Capture("mic", max_frames=30)  # the default reopen_max_s (1 s) caps the backoff
        await cap.start()
        await until(lambda: cap.open_failures >= 4)  # about 0.75 s of retries
        assert not cap.is_open and cap.captured == 0
        shutil.copy(speech, infile)
        t0 = time.monotonic()
        first = await asyncio.wait_for(cap.read(), 2.0)
        assert time.monotonic() - t0 < 2.0
        assert first == speech.read_bytes()[:960]
        await until(lambda: cap.ended)  # recovery is logged after half a second of audio
        await cap.stop()

    run(body())
    assert len(records(caplog, logging.WARNING, "unavailable")) == 1
    assert len(records(caplog, logging.INFO, "is back")) == 1


def test_device_failing_mid_stream_is_reopened(
    asound: AsoundRc, speech: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice.audio")
    infile = tmp_path / "mic.raw"
    shutil.copy(speech, infile)
    sink = killable_sink(tmp_path)
    asound.capture("mic", infile, sink=sink.pipe).write()
    first = speech.read_bytes()[:960]

    async def body() -> None:
        cap = Capture("mic", pace=1.0)
        await cap.start()
        assert await cap.read() == first
        for _ in range(4):
            await cap.read()
        # The pipe's reader dies: alsa-lib's next write to it fails and readi returns -EIO.
        # With the infile gone too, the reopens fail until it is back.
        infile.unlink()
        sink.kill()
        await until(lambda: not cap.is_open and cap.open_failures >= 2)
        shutil.copy(speech, infile)
        t0 = time.monotonic()
        while await asyncio.wait_for(cap.read(), 2.0) != first:  # the stream restarts at the top
            pass
        assert time.monotonic() - t0 < 2.0
        assert cap.reopens == 1
        for _ in range(20):  # recovery is logged after half a second of audio
            await cap.read()
        await cap.stop()

    run(body())
    assert len(records(caplog, logging.WARNING, "failed")) == 1
    assert len(records(caplog, logging.WARNING, "unavailable")) == 0  # the same outage, logged once
    assert len(records(caplog, logging.INFO, "is back")) == 1


def test_stop_ends_reads(asound: AsoundRc, speech: Path) -> None:
    asound.capture("mic", speech).write()

    async def body() -> None:
        cap = Capture("mic", pace=1.0)
        await cap.start()
        await cap.read()
        await cap.stop()
        assert not cap.is_open
        with pytest.raises(CaptureEnded):
            while True:
                await cap.read()

    run(body())


def test_bounded_capture_ends_when_the_device_never_opens(
    asound: AsoundRc, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`max_frames` is for file PCMs (`run --input-frames`): a device that never opens ends the stream."""
    caplog.set_level(logging.INFO, logger="edgevoice.audio")
    asound.capture("mic", tmp_path / "never.raw").write()

    async def body() -> None:
        cap = Capture("mic", max_frames=10, open_deadline_s=0.5)
        t0 = time.monotonic()
        await cap.start()
        with pytest.raises(CaptureEnded):
            await asyncio.wait_for(cap.read(), 3.0)
        assert 0.5 <= time.monotonic() - t0 < 1.5
        assert cap.captured == 0 and cap.open_failures >= 2
        await cap.stop()

    run(body())
    assert len(records(caplog, logging.WARNING, "did not open within")) == 1


def test_unbounded_capture_keeps_waiting(asound: AsoundRc, tmp_path: Path) -> None:
    """A daemon waits for its USB mic for ever: no deadline without `max_frames`."""
    from edgevoice.audio.capture import BOUNDED_OPEN_S

    asound.capture("mic", tmp_path / "never.raw").write()
    assert Capture("mic", max_frames=5)._open_deadline_s == BOUNDED_OPEN_S
    assert Capture("mic")._open_deadline_s is None
