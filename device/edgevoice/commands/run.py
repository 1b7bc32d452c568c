"""`edgevoice run`: the daemon in the foreground; what systemd starts."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import signal

from .. import config
from ..errors import UserError

log = logging.getLogger("edgevoice.run")

INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C; SIGTERM is a normal stop (0)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help=f"TOML settings (default {config.DEFAULT_PATH}, if present)")
    # Parsed here rather than by argparse, whose errors are a usage block, not one line naming the flag.
    parser.add_argument(
        "--input-pace",
        metavar="FACTOR",
        help="pace capture reads to FACTOR x real time (for ALSA file PCMs, which have no clock)",
    )
    parser.add_argument(
        "--input-frames",
        metavar="N",
        help="stop reading capture after N frames, answer what was heard, then exit (file PCMs)",
    )
    parser.set_defaults(func=run)


def positive_float(flag: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{flag} must be a positive number (got {text!r})")
    return value


def positive_int(flag: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"{flag} must be a whole number of frames, at least 1 (got {text!r})")
    return value


def run(args: argparse.Namespace) -> int:
    from ..models.lean import lean_botocore

    lean_botocore()  # first, before anything imports strands (and botocore with it)
    from .. import checks
    from ..audio import alsalib
    from ..audio.devices import check_devices

    pace = positive_float("--input-pace", args.input_pace)
    frames = positive_int("--input-frames", args.input_frames)
    settings = config.load(args.config)
    checks.check(settings, voice=False)
    alsalib.install_error_handler()  # before the first open, so even the device check stays quiet
    check_devices(settings.audio)
    _log_start(args.config, settings)
    return asyncio.run(_main(settings, pace, frames))


def _log_start(path: str | None, settings: config.Settings) -> None:
    from ..session.current import current_session_id

    if path is not None:
        source = path
    elif config.DEFAULT_PATH.exists():
        source = str(config.DEFAULT_PATH)
    else:
        source = "embedded defaults"
    a = settings.audio
    log.info(
        "starting: config %s, capture %s, playback %s, provider %s, session %s",
        source,
        a.capture_device,
        a.playback_device,
        settings.model.provider,
        current_session_id(settings.session),
    )


async def _main(settings: config.Settings, pace: float | None, frames: int | None) -> int:
    from ..daemon.connection import AgentBug
    from ..daemon.voice import StoreRetry, VoiceLoop, make_capture

    capture = make_capture(settings, pace=pace, max_frames=frames)
    loop = VoiceLoop(
        settings,
        capture=capture,
        stop_when_input_ends=frames is not None,
        # What runs beside the loop; the watchdog and buttons join here later. (`loop` is bound before the
        # retry first looks, 5 s in.)
        services=[StoreRetry(lambda: loop.session_manager)],
    )
    task = asyncio.current_task()
    assert task is not None
    ev = asyncio.get_running_loop()
    got: list[signal.Signals] = []

    def stop(sig: signal.Signals) -> None:
        got.append(sig)
        task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        ev.add_signal_handler(sig, stop, sig)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await loop.run()
    except AgentBug:
        return 1  # logged with its traceback; systemd restarts the daemon
    if got:
        log.info("stopped on %s", got[0].name)
    return INTERRUPTED if got and got[0] is signal.SIGINT else 0
