"""ALSA capture: a reader thread hands fixed-size 16 kHz frames to asyncio.

The thread never waits for the consumer: each frame goes to the event loop with
`call_soon_threadsafe` into a bounded queue that drops (and counts) the oldest frame when full.
A vanished device is reopened with capped exponential backoff; loss and recovery are logged once
(recovery after half a second of audio has flowed again: see `edgevoice.backoff.STABLE_S`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import alsaaudio

from edgevoice.audio import alsalib
from edgevoice.backoff import Outage
from edgevoice.pcm import RATE, StreamResampler, ms_bytes, ms_samples

log = logging.getLogger(__name__)

BOUNDED_OPEN_S = 5.0
"""A capture bounded by `max_frames` (a file PCM in tests, the bench, the demo) whose device has not
opened within this long counts as ended: `run --input-frames N` must exit, not wait for ever."""


class CaptureEnded(EOFError):
    """`read()` after the stream ended: `max_frames` were captured or `stop()` was called."""


class CapturePcm(Protocol):
    """The part of `alsaaudio.PCM` the reader uses."""

    def read(self) -> tuple[int, bytes]: ...
    def info(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


Opener = Callable[..., CapturePcm]
FrameFilter = Callable[[bytes, float], bytes]
"""What the reader thread runs on each frame before queueing it: (frame, when capture got its last sample)."""


class Capture:
    """Frames of `period_ms` of 16 kHz mono S16_LE from the ALSA PCM named `device`.

    `pace`: None reads as fast as the device delivers (real cards pace themselves); 1.0 paces
    reads to real time and N to N times real time (a `file` PCM returns data instantly).
    `max_frames`: end the stream after that many frames (a `file` PCM repeats stale buffer
    data after its input file ends). `open_deadline_s`: end the stream when the device has not
    opened this long after start (default: BOUNDED_OPEN_S with `max_frames`, else wait for ever,
    as a daemon waiting for its USB mic must). `opener` is the seam for tests (`alsaaudio.PCM`).
    """

    def __init__(
        self,
        device: str,
        *,
        rate: int = RATE,
        period_ms: int = 30,
        queue_frames: int = 100,
        reopen_max_s: float = 1.0,
        pace: float | None = None,
        max_frames: int | None = None,
        open_deadline_s: float | None = None,
        opener: Opener = alsaaudio.PCM,
    ) -> None:
        if period_ms <= 0 or queue_frames < 1 or reopen_max_s <= 0:
            raise ValueError("period_ms, queue_frames and reopen_max_s must be positive")
        if pace is not None and pace <= 0:
            raise ValueError(f"pace must be positive (got {pace})")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be at least 1 (got {max_frames})")
        if open_deadline_s is None and max_frames is not None:
            open_deadline_s = BOUNDED_OPEN_S
        self.device = device
        self.rate = rate
        self.period_ms = period_ms
        self.frame_bytes = ms_bytes(period_ms)  # every frame leaves at RATE, whatever the device runs at
        self._queue_frames = queue_frames
        self._reopen_max_s = reopen_max_s
        self._pace = pace
        self._max_frames = max_frames
        self._open_deadline_s = open_deadline_s
        self._opener = opener
        self.process: FrameFilter | None = None
        """Set before `start()`: runs on the reader thread on every frame (echo cancellation), with the frame's
        stamp: time.monotonic() when its last sample was read (for a paced file PCM, when a real card would
        have delivered it)."""
        # Loop side: touched only on the event loop.
        self._queue: collections.deque[bytes] = collections.deque()
        self._ready = asyncio.Event()
        self._dropped = 0
        self._captured = 0
        self._ended = False
        # Thread side: plain ints and a flag, read from anywhere.
        self._overruns = 0
        self._reopens = 0
        self._open_failures = 0
        self._heartbeat = time.monotonic()
        self._pcm: CapturePcm | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- counters -------------------------------------------------------------------------
    @property
    def dropped(self) -> int:
        """Frames thrown away because the queue was full (the oldest go first)."""
        return self._dropped

    @property
    def captured(self) -> int:
        """Frames handed to the queue so far, dropped ones included."""
        return self._captured

    @property
    def overruns(self) -> int:
        """ALSA overruns (reads that returned -EPIPE); the stream was recovered each time."""
        return self._overruns

    @property
    def reopens(self) -> int:
        """Times the device was opened again after it failed."""
        return self._reopens

    @property
    def open_failures(self) -> int:
        """Failed attempts to open the device."""
        return self._open_failures

    @property
    def heartbeat(self) -> float:
        """When (time.monotonic) the reader thread last came round its loop: one read of a period, or one
        wait between attempts to open. The watchdog's sign of a read that never returns."""
        return self._heartbeat

    @property
    def is_open(self) -> bool:
        return self._pcm is not None

    @property
    def ended(self) -> bool:
        """The reader has finished; `read()` returns what is queued, then raises CaptureEnded."""
        return self._ended

    # -- asyncio side ---------------------------------------------------------------------
    async def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("capture already started")
        self._loop = asyncio.get_running_loop()
        alsalib.install_error_handler()  # alsa-lib's retries must not print to stderr every second
        self._thread = threading.Thread(target=self._run, name=f"capture:{self.device}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop the reader and close the device; frames already queued can still be read."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            await asyncio.to_thread(thread.join)
        self._end()

    async def read(self) -> bytes:
        """The next frame, oldest first; raises CaptureEnded once the stream is over and drained."""
        while not self._queue:
            if self._ended:
                raise CaptureEnded(f"capture from {self.device!r} ended after {self._captured} frames")
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while True:
            try:
                yield await self.read()
            except CaptureEnded:
                return

    def _put(self, frame: bytes) -> None:
        if len(self._queue) >= self._queue_frames:
            self._queue.popleft()
            self._dropped += 1
        self._queue.append(frame)
        self._captured += 1
        self._ready.set()

    def _end(self) -> None:
        self._ended = True
        self._ready.set()

    def _to_loop(self, fn: Callable[..., None], *args: Any) -> bool:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            return False
        return True

    # -- reader thread --------------------------------------------------------------------
    def _open(self) -> tuple[CapturePcm, StreamResampler]:
        period = ms_samples(self.period_ms, self.rate)
        pcm = self._opener(
            alsaaudio.PCM_CAPTURE,
            device=self.device,
            rate=self.rate,
            channels=1,
            format=alsaaudio.PCM_FORMAT_S16_LE,
            periodsize=period,
        )
        actual = int(pcm.info().get("rate", self.rate))
        if actual != self.rate:
            log.warning(
                "capture device %s runs at %d Hz, not %d; resampling from %d",
                self.device,
                actual,
                self.rate,
                actual,
            )
        return pcm, StreamResampler(actual, RATE)

    def _run(self) -> None:
        # Failures are logged once per outage by Outage; alsa-lib's own words for them go to DEBUG.
        with alsalib.quiet():
            self._read_loop()

    def _read_loop(self) -> None:
        outage = Outage(log, f"capture device {self.device}", self._reopen_max_s)
        opened_before = False
        resampler: StreamResampler | None = None
        pending = b""
        frames = 0
        pace_t0 = 0.0
        pace_samples = 0
        started = time.monotonic()
        try:
            while not self._stop.is_set():
                self._heartbeat = time.monotonic()
                if self._pcm is None:
                    try:
                        self._pcm, resampler = self._open()
                    except alsaaudio.ALSAAudioError as e:
                        self._open_failures += 1
                        delay = outage.failed(e, opening=True)
                        if not opened_before and self._open_deadline_s is not None:
                            left = started + self._open_deadline_s - time.monotonic()
                            if left <= 0:
                                log.warning(
                                    "capture device %s did not open within %g s; capture ended",
                                    self.device,
                                    self._open_deadline_s,
                                )
                                return
                            delay = min(delay, left)
                        if self._stop.wait(delay):
                            break
                        continue
                    if opened_before:
                        self._reopens += 1
                    opened_before = True
                    pending = b""
                    pace_t0, pace_samples = time.monotonic(), 0
                assert resampler is not None
                try:
                    n, data = self._pcm.read()
                except alsaaudio.ALSAAudioError as e:
                    self._close()
                    if self._stop.wait(outage.failed(e, opening=False)):
                        break
                    continue
                if n < 0:  # -EPIPE: overrun; pyalsaaudio has already re-prepared the stream
                    self._overruns += 1
                    continue
                if n == 0:
                    self._stop.wait(self.period_ms / 4000)
                    continue
                outage.worked(n / resampler.in_rate)
                read_at = time.monotonic()
                if self._pace is not None:  # a file PCM returns at once: the frame is "captured" when it is due
                    read_at = max(read_at, pace_t0 + (pace_samples + n) / (resampler.in_rate * self._pace))
                pending += resampler.process(data)
                while len(pending) >= self.frame_bytes:
                    frame, pending = pending[: self.frame_bytes], pending[self.frame_bytes :]
                    if self.process is not None:  # its last sample came before what is still pending
                        frame = self.process(frame, read_at - len(pending) / (2 * RATE))
                    if not self._to_loop(self._put, frame):
                        return
                    frames += 1
                    if self._max_frames is not None and frames >= self._max_frames:
                        return
                if self._pace is not None:
                    pace_samples += n
                    due = pace_t0 + pace_samples / (resampler.in_rate * self._pace)
                    delay = due - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
        finally:
            self._close()
            if self._loop is not None:
                self._to_loop(self._end)

    def _close(self) -> None:
        pcm, self._pcm = self._pcm, None
        if pcm is not None:
            try:
                pcm.close()
            except alsaaudio.ALSAAudioError as e:
                log.debug("closing capture device %s: %s", self.device, e)
