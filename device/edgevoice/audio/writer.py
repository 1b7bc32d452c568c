"""The playback writer thread's loop: pacing, barge-in, going idle, reopening a failed device.

Kept apart from `Playback` (the public, thread-safe side) so each stays readable; it works on
Playback's state under Playback's lock, as the one thread allowed to touch the PCM.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import alsaaudio

from edgevoice.backoff import Outage
from edgevoice.pcm import StreamResampler

if TYPE_CHECKING:
    from edgevoice.audio.playback import Playback

log = logging.getLogger("edgevoice.audio.playback")  # the journal keeps one name for playback


def _passthrough(r: StreamResampler | None) -> bool:
    return r is None or r.passthrough


class Writer:
    """The writer thread's loop and its local state (kept apart from the public object)."""

    def __init__(self, pb: Playback) -> None:
        self.pb = pb
        self.gen = pb._flush_gen  # the flush generation handled so far
        self.started = False  # on_start sent, on_idle not yet
        self.play_clock = 0.0  # paced mode: when everything written so far has been played
        self.outage = Outage(log, f"playback device {pb.device}", pb._reopen_max_s)
        self.opened_before = False
        self.period_s = pb.period_frames / pb.rate
        # A stream that pauses this long is over: soxr's tail is played and its state reset.
        self.tail_grace_s = max(0.1, 3 * self.period_s)

    def loop(self) -> None:
        pb = self.pb
        while True:
            with pb._cond:
                busy = self.started or pb._active
                if not pb._stopping and not pb._chunks and self.gen == pb._flush_gen:
                    pb._cond.wait(self.period_s / 2 if busy else None)
                busy = self.started or pb._active
                if pb._stopping:
                    return
                if self.gen != pb._flush_gen:
                    self.gen = pb._flush_gen
                    chunk = None
                    flushed = True
                else:
                    flushed = False
                    chunk = pb._take_locked(pb.period_frames * 2)
                gen = self.gen
            if flushed:
                self._barge_in()
            elif chunk:
                self._write(chunk, gen)
            elif busy:
                self._maybe_idle()

    def _barge_in(self) -> None:
        pcm = self.pb._pcm
        if pcm is not None:
            try:
                pcm.drop()
            except alsaaudio.ALSAAudioError as e:
                log.debug("drop on playback device %s: %s", self.pb.device, e)
        if self.pb.on_cut is not None:
            self.pb.on_cut(time.monotonic())
        self.play_clock = 0.0
        if self.started:
            self.started = False
            self.pb._emit(self.pb.on_idle)

    def _drained(self) -> bool:
        pb = self.pb
        if pb._paced:
            return time.monotonic() >= self.play_clock
        if pb._pcm is None:
            return True
        avail = pb._pcm.avail()
        return avail < 0 or avail >= pb.buffer_frames  # negative: an xrun, so nothing is left

    def _maybe_idle(self) -> None:
        pb = self.pb
        if not self._drained():
            return
        with pb._cond:
            if pb._chunks or self.gen != pb._flush_gen:
                return
            if time.monotonic() - pb._last_play < self.tail_grace_s and not _passthrough(pb._resampler):
                return  # more of this stream may still come: keep soxr's state, no seam
            pb._end_stream_locked()  # the resampler's tail, if any, is played before going idle
            if pb._chunks:
                return
            pb._resampler = None
            pb._set_idle_locked()
        if pb._pcm is not None:
            try:
                pb._pcm.drop()  # back to SETUP (the next write re-prepares); file PCMs write out
            except alsaaudio.ALSAAudioError as e:
                log.debug("drop on playback device %s: %s", pb.device, e)
        if self.started:
            self.started = False
            pb._emit(pb.on_idle)

    def _flushed_since(self, gen: int) -> bool:
        return self.pb._flush_gen != gen

    def _wait(self, seconds: float, gen: int) -> bool:
        """Sleep, waking early on flush or stop; True when woken that way."""
        pb = self.pb
        deadline = time.monotonic() + seconds
        with pb._cond:
            while not pb._stopping and not self._flushed_since(gen):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                pb._cond.wait(left)
        return True

    def _ensure_open(self, gen: int) -> bool:
        pb = self.pb
        while pb._pcm is None:
            try:
                pb._pcm = pb._open()
            except alsaaudio.ALSAAudioError as e:
                pb._open_failures += 1
                if self._wait(self.outage.failed(e, opening=True), gen):
                    return False
                continue
            if self.opened_before:
                pb._reopens += 1
            self.opened_before = True
            self.play_clock = 0.0
        return True

    def _write(self, chunk: bytes, gen: int) -> None:
        pb = self.pb
        while chunk:
            if not self._ensure_open(gen):
                return
            if not self.started:
                self.started = True
                pb._emit(pb.on_start)
            now = time.monotonic()
            if pb._paced:
                lead = pb.buffer_frames / pb.rate
                self.play_clock = max(self.play_clock, now)
                if self.play_clock - now > lead and self._wait(self.play_clock - now - lead, gen):
                    return
            if self._flushed_since(gen):
                return
            assert pb._pcm is not None
            try:
                n = pb._pcm.write(chunk)
            except alsaaudio.ALSAAudioError as e:
                pb._close()
                if self._wait(self.outage.failed(e, opening=False), gen):
                    return
                continue  # the chunk is retried on the reopened device
            if n < 0:  # -EPIPE: underrun; pyalsaaudio re-prepared the stream, write again
                pb._underruns += 1
                continue
            self.outage.worked(n / pb.rate)
            if pb._paced is None:
                pb._paced = pb._pcm.avail() >= pb.buffer_frames
                log.debug("playback device %s: paced=%s", pb.device, pb._paced)
            if pb._paced:
                start_at = max(self.play_clock, now)
                self.play_clock = start_at + n / pb.rate
            else:
                start_at = self._sounds_at(n, now)
            if pb.on_played is not None:
                pb.on_played(chunk[: n * 2], pb.rate, start_at)
            chunk = chunk[n * 2 :]

    def _sounds_at(self, n: int, now: float) -> float:
        """When the first of the `n` frames just written reaches the output: after what was queued before them.
        The codec's own delay is not known here, so this is early, never late (what echo cancellation needs)."""
        assert self.pb._pcm is not None
        try:
            avail = self.pb._pcm.avail()
        except alsaaudio.ALSAAudioError:
            return now
        queued = self.pb.buffer_frames - avail if avail >= 0 else n  # negative: an xrun, the buffer restarts
        return now + max(0, queued - n) / self.pb.rate
