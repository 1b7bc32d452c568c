"""ALSA playback: a writer thread feeds period-sized chunks to the device; `flush()` is barge-in.

Only the writer thread touches the PCM. It opens the device lazily, reopens it with capped
backoff when it fails (logged once each way), and reports start and idle on the event loop.
alsa-lib's `file`/`null` PCMs swallow audio instantly, so the writer can pace itself to real
time (`pace`), keeping at most one ALSA buffer ahead as a real card would.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import alsaaudio

from edgevoice.audio import alsalib
from edgevoice.audio.writer import Writer
from edgevoice.pcm import RATE, StreamResampler, ms_samples

log = logging.getLogger(__name__)


class PlaybackPcm(Protocol):
    """The part of `alsaaudio.PCM` the writer uses."""

    def write(self, data: bytes) -> int: ...
    def avail(self) -> int: ...
    def drop(self) -> int: ...
    def info(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


Opener = Callable[..., PlaybackPcm]
Callback = Callable[[], object]


class Playback:
    """Plays S16_LE mono audio on the ALSA PCM named `device`, opened at `rate`.

    `pace`: True paces writes to real time (for `file`/`null` PCMs, which alsa-lib does not
    pace), False trusts the device to block, None decides at the first write: a device whose
    buffer is still empty right after a write consumes instantly and gets paced.
    `on_start`/`on_idle` run on the event loop that called `start()` (or on the writer thread
    when there is none): on_start before the first chunk of a stretch of audio is written,
    on_idle when that stretch has been played out or flushed.
    """

    def __init__(
        self,
        device: str,
        *,
        rate: int = RATE,
        period_ms: int = 30,
        periods: int = 4,
        reopen_max_s: float = 1.0,
        pace: bool | None = None,
        on_start: Callback | None = None,
        on_idle: Callback | None = None,
        opener: Opener = alsaaudio.PCM,
    ) -> None:
        if period_ms <= 0 or periods < 2 or reopen_max_s <= 0:
            raise ValueError("period_ms and reopen_max_s must be positive, periods at least 2")
        self.device = device
        self.rate = rate
        self.period_frames = ms_samples(period_ms, rate)
        self.buffer_frames = self.period_frames * periods  # updated from the device when opened
        self.on_start = on_start
        self.on_idle = on_idle
        self.on_played: Callable[[bytes, int, float], None] | None = None
        """Runs on the writer thread after each write: (the audio at the device rate, the rate, when its first
        sample sounds): the echo canceller's far end (`frontend.FarEnd.played`)."""
        self.on_cut: Callable[[float], None] | None = None
        """Runs on the writer thread when a barge-in dropped the device's buffer, with when (`FarEnd.cut`)."""
        self._periods = periods
        self._reopen_max_s = reopen_max_s
        self._pace = pace
        self._opener = opener
        self._cond = threading.Condition()
        # Guarded by _cond.
        self._chunks: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._active = False
        self._flush_gen = 0
        self._stopping = False
        self._resampler: StreamResampler | None = None
        self._last_play = 0.0
        self._idle_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        # Writer thread only (the ints are read from anywhere).
        self._pcm: PlaybackPcm | None = None
        self._paced: bool | None = pace
        self._underruns = 0
        self._reopens = 0
        self._open_failures = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- state ----------------------------------------------------------------------------
    @property
    def is_playing(self) -> bool:
        """True while audio is queued or still being written/played."""
        return self._active

    @property
    def is_open(self) -> bool:
        return self._pcm is not None

    @property
    def paced(self) -> bool | None:
        """Whether the writer paces itself; None until decided at the first write."""
        return self._paced

    @property
    def underruns(self) -> int:
        return self._underruns

    @property
    def reopens(self) -> int:
        return self._reopens

    @property
    def open_failures(self) -> int:
        return self._open_failures

    # -- control --------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("playback already started")
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        alsalib.install_error_handler()  # alsa-lib's retries must not print to stderr every second
        self._thread = threading.Thread(target=self._run, name=f"playback:{self.device}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Drop whatever is queued, stop the writer and close the device."""
        self.flush()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    def play(self, pcm: bytes, rate: int) -> None:
        """Queue S16_LE mono audio at `rate` (resampled to the device rate); thread-safe."""
        if len(pcm) % 2:
            raise ValueError("S16_LE audio must have an even number of bytes")
        with self._cond:
            if self._resampler is None or self._resampler.in_rate != rate:
                self._end_stream_locked()
                self._resampler = StreamResampler(rate, self.rate)
            self._last_play = time.monotonic()
            out = self._resampler.process(pcm)
            if out:
                self._chunks.append(out)
                self._queued += len(out)
            if pcm:
                self._active = True
                self._cond.notify_all()

    def flush(self) -> int:
        """Barge-in: drop all queued audio and stop the device within one period.

        Returns the bytes dropped from the queue (at the device rate); audio already inside
        the ALSA buffer is discarded with `snd_pcm_drop` and is not counted.
        """
        with self._cond:
            dropped = self._queued
            self._chunks.clear()
            self._queued = 0
            if self._resampler is not None:
                self._resampler.reset()
            self._flush_gen += 1
            self._set_idle_locked()
            self._cond.notify_all()
        return dropped

    def drain(self, timeout: float | None = None) -> bool:
        """Block until everything queued has been played; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._active, timeout)

    async def wait_idle(self) -> None:
        """Wait (on the running loop) until nothing is queued or playing."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if not self._active:
                return
            self._idle_waiters.append((loop, fut))
        await fut

    # -- helpers under the lock -----------------------------------------------------------
    def _end_stream_locked(self) -> None:
        if self._resampler is not None:
            tail = self._resampler.flush()
            if tail:
                self._chunks.append(tail)
                self._queued += len(tail)

    def _set_idle_locked(self) -> None:
        self._active = False
        self._cond.notify_all()
        waiters, self._idle_waiters = self._idle_waiters, []
        for loop, fut in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(_resolve, fut)

    def _take_locked(self, max_bytes: int) -> bytes:
        out = bytearray()
        while self._chunks and len(out) < max_bytes:
            head = self._chunks.popleft()
            room = max_bytes - len(out)
            if len(head) > room:
                self._chunks.appendleft(head[room:])
                head = head[:room]
            out += head
        self._queued -= len(out)
        return bytes(out)

    def _emit(self, cb: Callback | None) -> None:
        if cb is None:
            return
        if self._loop is None:
            cb()
            return
        try:
            self._loop.call_soon_threadsafe(cb)
        except RuntimeError:
            log.debug("event loop closed; playback callback dropped")

    # -- writer thread --------------------------------------------------------------------
    def _run(self) -> None:
        w = Writer(self)
        try:
            # Failures are logged once per outage by Outage; alsa-lib's own words for them go to DEBUG.
            with alsalib.quiet():
                w.loop()
        finally:
            self._close()

    def _open(self) -> PlaybackPcm:
        pcm = self._opener(
            alsaaudio.PCM_PLAYBACK,
            device=self.device,
            rate=self.rate,
            channels=1,
            format=alsaaudio.PCM_FORMAT_S16_LE,
            periodsize=self.period_frames,
            periods=self._periods,
        )
        info = pcm.info()
        self.buffer_frames = int(info.get("buffer_size", self.buffer_frames))
        if int(info.get("rate", self.rate)) != self.rate:
            log.warning(
                "playback device %s runs at %s Hz, not %d: audio will be off pitch (use a plughw: or default device)",
                self.device,
                info.get("rate"),
                self.rate,
            )
        return pcm

    def _close(self) -> None:
        pcm, self._pcm = self._pcm, None
        if pcm is not None:
            try:
                pcm.close()
            except alsaaudio.ALSAAudioError as e:
                log.debug("closing playback device %s: %s", self.device, e)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
