"""The audio devices: do the configured capture and playback PCMs open at the configured rates, and does the
microphone hear anything?

Devices are opened non-blocking (`PCM_NONBLOCK`): a blocking open of a `hw:` device that another process
holds (the running daemon) waits in the kernel until it is released, and a blocking read from a stalled
device never returns; doctor must answer either way. The daemon's own open parameters are used (mono
S16_LE, `audio.period_ms` periods; playback with `Playback`'s 4 periods), so what opens here opens there.
alsa-lib's own messages go to logging at DEBUG (`alsalib.quiet`): the row says what failed.

The level check reads `seconds` of audio and fails on the two signs of a dead or miswired microphone:
digital silence (every sample exactly 0: no mic on the input, a muted or zeroed capture mixer) and
clipping (CLIP_FRACTION of the samples at full scale: a miswired or floating input, a gain far too high).
Anything else passes and is reported: a quiet room is not a fault.
Levels are dBFS of samples scaled by `pcm.to_float` (full-scale square wave = 0 dBFS, so a full-scale sine
has an RMS of -3 dBFS).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import alsaaudio

from .. import pcm
from ..audio import alsalib
from ..audio.capture import CapturePcm
from ..settings import AudioSettings
from . import FAIL, Check, fail, ok, skip

CAPTURE = "capture"
PLAYBACK = "playback"
MIC_LEVEL = "mic_level"

MIC_SECONDS = 2.0
"""How much audio the level check reads by default."""
CLIP_FRACTION = 0.01
"""Share of samples at full scale (+32767 or -32768) from which the capture counts as clipped. Loud speech
clips a few samples now and then; one in a hundred over two seconds is a broken input, not a loud room."""
STALL_S = 1.0
"""How much longer than `seconds` the level check waits for the audio before it calls the device stalled."""
PLAYBACK_PERIODS = 4
"""Periods in the playback buffer: `audio.Playback`'s default, which the daemon opens it with."""

Opener = Callable[..., CapturePcm]
"""`alsaaudio.PCM`, or a test's stand-in."""


@contextmanager
def _quiet_alsa() -> Iterator[None]:
    """alsa-lib's messages into logging, at DEBUG on this thread (as the capture and playback threads do)."""
    alsalib.install_error_handler()
    with alsalib.quiet():
        yield


def _open(opener: Opener, kind: int, device: str, rate: int, period_ms: int, **extra: int) -> CapturePcm:
    return opener(
        kind,
        mode=alsaaudio.PCM_NONBLOCK,
        device=device,
        rate=rate,
        channels=1,
        format=alsaaudio.PCM_FORMAT_S16_LE,
        periodsize=pcm.ms_samples(period_ms, rate),
        **extra,
    )


def _undefined(key: str, device: str, capture: bool) -> str | None:
    """Why `device` cannot ever open (no ALSA configuration defines it), as `edgevoice run` says it; else None."""
    if alsalib.pcm_defined(device):
        return None
    known = ", ".join(alsalib.pcm_names(capture)) or "none"
    return f"{key} {device!r} is not a PCM alsa-lib knows; defined: {known}"


def _open_error(device: str, e: Exception) -> str:
    text = str(e)
    if "busy" in text.lower():
        return f"{device!r} is busy ({text}): another program has it open (stop `edgevoice run` first)"
    return f"{device!r} does not open ({text})"


def _accepted(info: Mapping[str, Any]) -> str:
    rate = int(info.get("rate", 0))
    period = int(info.get("period_size", 0))
    ms = f" ({period * 1000 / rate:g} ms)" if rate else ""
    return f"{rate} Hz, period {period} frames{ms}, buffer {int(info.get('buffer_size', 0))} frames"


def check_capture(audio: AudioSettings, *, opener: Opener = alsaaudio.PCM) -> Check:
    """`audio.capture_device` opens at `audio.rate`; reports the rate and period it accepted."""
    device = audio.capture_device
    with _quiet_alsa():
        if (why := _undefined("audio.capture_device", device, True)) is not None:
            return fail(CAPTURE, why)
        try:
            handle = _open(opener, alsaaudio.PCM_CAPTURE, device, audio.rate, audio.period_ms)
        except alsaaudio.ALSAAudioError as e:
            return fail(CAPTURE, _open_error(device, e))
        try:
            info = handle.info()
        finally:
            handle.close()
    detail = f"{device}: {_accepted(info)}"
    actual = int(info.get("rate", audio.rate))
    if actual != audio.rate:
        # The daemon resamples what the device gives (`Capture` logs it); a plughw: device would convert.
        detail += f" (asked {audio.rate} Hz: resampled)"
    return ok(CAPTURE, detail)


def check_playback(audio: AudioSettings, *, opener: Opener = alsaaudio.PCM) -> Check:
    """`audio.playback_device` opens at `audio.playback_rate`; reports the rate and period it accepted."""
    device = audio.playback_device
    with _quiet_alsa():
        if (why := _undefined("audio.playback_device", device, False)) is not None:
            return fail(PLAYBACK, why)
        try:
            handle = _open(
                opener, alsaaudio.PCM_PLAYBACK, device, audio.playback_rate, audio.period_ms, periods=PLAYBACK_PERIODS
            )
        except alsaaudio.ALSAAudioError as e:
            return fail(PLAYBACK, _open_error(device, e))
        try:
            info = handle.info()
        finally:
            handle.close()
    actual = int(info.get("rate", audio.playback_rate))
    if actual != audio.playback_rate:
        # `Playback` writes audio resampled for playback_rate: at another rate it plays off pitch.
        return fail(
            PLAYBACK,
            f"{device}: runs at {actual} Hz, not audio.playback_rate {audio.playback_rate}: answers would play "
            "off pitch (use a plughw: or default device)",
        )
    return ok(PLAYBACK, f"{device}: {_accepted(info)}")


def check_mic_level(
    audio: AudioSettings,
    *,
    seconds: float = MIC_SECONDS,
    opener: Opener = alsaaudio.PCM,
    done: Mapping[str, Check] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> Check:
    """Read `seconds` from the capture device; FAIL on digital silence or clipping. `done`: the checks run
    before it (a capture device that did not open is not opened again)."""
    capture = (done or {}).get(CAPTURE)
    if capture is not None and capture.status == FAIL:
        return skip(MIC_LEVEL, "the capture device did not open")
    device = audio.capture_device
    with _quiet_alsa():
        try:
            handle = _open(opener, alsaaudio.PCM_CAPTURE, device, audio.rate, audio.period_ms)
        except alsaaudio.ALSAAudioError as e:
            return fail(MIC_LEVEL, _open_error(device, e))
        try:
            rate = int(handle.info().get("rate", audio.rate))
            data, why = _read(handle, round(seconds * rate) * pcm.SAMPLE_BYTES, seconds, clock, sleep)
        except alsaaudio.ALSAAudioError as e:
            return fail(MIC_LEVEL, f"{device!r} failed while reading ({e})")
        finally:
            handle.close()
    if why:
        return fail(MIC_LEVEL, f"{device}: {why}")
    rms, peak, clipped = pcm.levels(data)
    span = f"{len(data) / pcm.SAMPLE_BYTES / rate:g} s"
    if peak == -math.inf:
        return fail(
            MIC_LEVEL,
            f"{device}: digital silence for {span} (every sample 0): no microphone, a muted capture mixer "
            "(alsamixer) or the wrong input",
        )
    if clipped >= CLIP_FRACTION:
        return fail(
            MIC_LEVEL,
            f"{device}: clipped ({clipped:.0%} of samples at full scale over {span}, RMS {rms:.1f} dBFS): a "
            "miswired or floating input, or the capture gain far too high",
        )
    return ok(MIC_LEVEL, f"{device}: RMS {rms:.1f} dBFS, peak {peak:.1f} dBFS over {span}")


def _read(
    handle: CapturePcm, want: int, seconds: float, clock: Callable[[], float], sleep: Callable[[float], object]
) -> tuple[bytes, str]:
    """`want` bytes from a non-blocking capture PCM, or what came and why it stopped."""
    chunks: list[bytes] = []
    got = 0
    deadline = clock() + seconds + STALL_S
    while got < want:
        n, data = handle.read()
        if n > 0:
            chunks.append(data)
            got += len(data)
            continue
        # Nothing there yet (-EAGAIN, or 0), or an overrun (-EPIPE) pyalsaaudio has recovered from.
        if clock() > deadline:
            return b"".join(chunks), f"only {got} of {want} bytes within {seconds + STALL_S:g} s (device stalled)"
        sleep(0.005)  # a real device delivers a period every few ms
    return b"".join(chunks)[:want], ""
